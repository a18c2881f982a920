package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOverlayCreateInterrupted: a SIGTERM while `overlay create` builds
// (a 1 TiB sparse image takes it tens of seconds) removes the staging
// file, which had stayed, as large as the overlay, until the next create,
// and husk dies of the signal.
func TestOverlayCreateInterrupted(t *testing.T) {
	setup(t)
	dir := workDir(t)
	img := filepath.Join(dir, "big.img")
	cmd := userCmd(dir, "overlay", "create", "--sparse", "--size", "1048576", img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		staged, _ := filepath.Glob(img + ".husk-create-*")
		if len(staged) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("no staging file in 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // into mkfs
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("overlay create after SIGTERM: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "big.img") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
