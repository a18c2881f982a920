// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runInstanceHelper is the unprivileged husk of an instance: it listens
// on HUSK_SANDBOX_TEST_SOCKET and writes the stage 2 pid to <socket>.pid
// once the payload runs.
func runInstanceHelper(spec *Spec, files []*os.File, log *slog.Logger) (int, error) {
	sock := os.Getenv("HUSK_SANDBOX_TEST_SOCKET")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return setupFailed, err
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return setupFailed, err
	}
	return RunInstance(context.Background(), spec, files, lf, log, func(pid int) {
		os.WriteFile(sock+".pid", []byte(strconv.Itoa(pid)), 0o644)
	})
}

// TestInstanceJoin: an instance stays up after its payload exits, runs
// joined commands with their own stdio, environment and status, and stops
// on SIGINT with everything unmounted.
func TestInstanceJoin(t *testing.T) {
	e := newEnv(t)
	inst := e.helper("instance", e.spec("sh", "-c", "echo started"))
	var istdout, istderr strings.Builder
	inst.cmd.Stdout, inst.cmd.Stderr = &istdout, &istderr
	inst.start()
	pidFile := e.wd + "/sock.pid"
	var pid int
	for i := 0; ; i++ {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			pid, _ = strconv.Atoi(string(b))
			break
		}
		if i > 600 {
			t.Fatalf("instance did not start:\n%s", istderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the startscript exits; the instance stays

	js := e.spec("sh", "-c", `echo "joined $X $(id -u)"; exit 5`)
	js.Env = append(js.Env, "X=x")
	j := e.helper("join", js)
	var jout, jerr strings.Builder
	j.cmd.Stdout, j.cmd.Stderr = &jout, &jerr
	j.start()
	res := j.wait(&jerr)
	if res.Err != "" || res.Status != 5 || jout.String() != fmt.Sprintf("joined x %d\n",
		testUID) {
		t.Errorf("join: status %d, error %q, stdout %q, stderr %s", res.Status, res.Err,
			jout.String(), jerr.String())
	}

	// A joined command killed by a signal is -N, one exiting 128+N is that.
	for _, c := range []struct {
		script string
		want   int
	}{{"kill -TERM $$", -int(syscall.SIGTERM)}, {"exit 143", 143}} {
		j := e.helper("join", e.spec("sh", "-c", c.script))
		var jerr strings.Builder
		j.cmd.Stderr = &jerr
		j.start()
		if res := j.wait(&jerr); res.Err != "" || res.Status != c.want {
			t.Errorf("join %q: status %d, error %q, want %d; stderr %s", c.script,
				res.Status, res.Err, c.want, jerr.String())
		}
	}

	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ires := inst.wait(&istderr)
	if ires.Err != "" || istdout.String() != "started\n" {
		t.Errorf("instance: %+v, stdout %q, stderr %s", ires, istdout.String(),
			istderr.String())
	}
	e.checkClean()
}
