package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
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
	img, dir := debianSIF(t), workDir(t)
	own := filepath.Join(dir, "own.sif")
	tool(t, "cp", "--sparse=always", img, own)
	chown(t, own)
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
