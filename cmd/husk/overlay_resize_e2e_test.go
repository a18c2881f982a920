package main

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOverlayResize grows an overlay the user made and wrote to, then uses
// the new space from a container: the old file survives, 1.5 GiB fit into
// an image that was 64 MiB, and e2fsck finds it clean.
func TestOverlayResize(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	ov := overlayImg(t, dir, "--sparse", "--create-dir", "/data")
	ok(t, dir, "exec", "--overlay", ov, img, "sh", "-c", "echo kept > /data/x")

	r := husk(t, dir, "overlay", "resize", ov, "32")
	fatalLine(t, r, "shrinking the overlay from 64 MiB to 32 MiB is not supported")
	ok(t, dir, "overlay", "resize", ov, "2G")
	fsckClean(t, ov, 0)

	var info struct {
		Size      int64  `json:"size"`
		FSSize    int64  `json:"fs_size"`
		State     string `json:"state"`
		HasUpper  bool   `json:"has_upper"`
		HasWork   bool   `json:"has_work"`
		BlockSize uint32 `json:"block_size"`
	}
	out := ok(t, dir, "overlay", "info", "--json", ov).stdout
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("overlay info --json: %v\n%s", err, out)
	}
	if info.Size != 2<<30 || info.FSSize != 2<<30 || info.State != "clean" ||
		!info.HasUpper || !info.HasWork {
		t.Errorf("overlay info after growing: %+v", info)
	}

	r = ok(t, dir, "exec", "--overlay", ov, img, "sh", "-c",
		"cat /data/x && dd if=/dev/zero of=/data/big bs=1M count=1536 status=none && "+
			"stat -c %s /data/big")
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "kept" ||
		got[1] != "1610612736" {
		t.Errorf("container after growing printed %q", r.stdout)
	}
	fsckClean(t, ov, 0)
	text := ok(t, dir, "overlay", "info", ov).stdout
	for _, want := range []string{"Size:          2048 MiB", "Journal:       clean",
		"upper/:        yes"} {
		if !strings.Contains(text, want) {
			t.Errorf("overlay info lacks %q:\n%s", want, text)
		}
	}
}

// TestOverlayResizeInSIF grows a SIF's overlay partition (the last object)
// and writes past its old size with --writable.
func TestOverlayResizeInSIF(t *testing.T) {
	setup(t)
	dir := workDir(t)
	own := ownSIF(t, dir, "own.sif")
	ok(t, dir, "overlay", "create", "--sparse", "--create-dir", "/data", own)
	ok(t, dir, "exec", "--writable", own, "sh", "-c", "echo in-sif > /data/f")

	ok(t, dir, "overlay", "resize", own, "400M")
	fsckClean(t, own, overlayOffset(t, own))
	r := ok(t, dir, "exec", "--writable", own, "sh", "-c",
		"cat /data/f && dd if=/dev/zero of=/data/big bs=1M count=300 status=none && "+
			"stat -c %s /data/big")
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "in-sif" ||
		got[1] != "314572800" {
		t.Errorf("container after growing printed %q", r.stdout)
	}
	fsckClean(t, own, overlayOffset(t, own))
	if out := ok(t, dir, "overlay", "info", own).stdout; !strings.Contains(out,
		"Size:          400 MiB") {
		t.Errorf("overlay info after growing:\n%s", out)
	}
	ok(t, dir, "sif", "list", own)
}

// The trial's failed resizes: 10T is beyond what the 1 KiB-block ext3 can
// reach and is refused before the file is touched; 200M of a fully
// allocated image on a 100 MiB file system (a tmpfs mounted here, never
// the machine's disk) is refused saying how much is needed and available.
// Both leave the image as it was, clean.
func TestOverlayResizeRefusedLeavesImage(t *testing.T) {
	setup(t)
	dir := workDir(t)
	small := filepath.Join(dir, "small")
	os.Mkdir(small, 0o755)
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=100m,mode=0755,uid=1500,"+
		"gid=1500"); err != nil {
		t.Fatalf("mounting a tmpfs on %s (tests run as root): %v", small, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(small, 0); err != nil {
			t.Errorf("unmounting %s: %v", small, err)
		}
	})
	full := filepath.Join(small, "full.img")
	ok(t, small, "overlay", "create", "--size", "64", full)

	fatalLine(t, husk(t, small, "overlay", "resize", full, "10T"), full+": cannot grow "+
		"the overlay to 10485760 MiB", "grows to at most")
	fatalLine(t, husk(t, small, "overlay", "resize", full, "200M"),
		full+": growing needs 136 MiB more on the file system holding it, but only")
	st, err := os.Stat(full)
	if err != nil || st.Size() != 64<<20 {
		t.Fatalf("image after refused resizes: %v %v", st, err)
	}
	fsckClean(t, full, 0)

	// The same for a SIF's overlay partition: nothing moves.
	own := ownSIF(t, dir, "own.sif")
	ok(t, dir, "overlay", "create", "--sparse", own)
	before := fileSum(t, own)
	fatalLine(t, husk(t, dir, "overlay", "resize", own, "10T"), "grows to at most")
	if after := fileSum(t, own); after != before {
		t.Errorf("SIF changed by a refused resize")
	}
	fsckClean(t, own, overlayOffset(t, own))
}

// fileSum is the SHA-256 of the file at p.
func fileSum(t *testing.T, p string) [sha256.Size]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}
