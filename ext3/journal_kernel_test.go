package ext3

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// These tests let the kernel's jbd2 write the journal: they loop-mount a
// fresh image, change files, sync, and copy the image while it is still
// mounted. The copy has committed but unchekpointed transactions
// (s_start != 0), which recover and e2fsck must replay identically.

type kernelCase struct {
	name   string
	mkfs   string
	args   []string
	sizeKB int
	opts   string // mount options besides loop
	wantIn uint32 // incompat bits the kernel's journal must have
	wantCo uint32
	// fsyncs is a number of small fsync'ed writes after the workload:
	// each one commits a transaction, so the log fills and wraps.
	fsyncs int
	// rotate moves the kernel's log so that it wraps at the end of the
	// journal area (jbd2 on Linux 6.18 restarted the log near s_first in
	// every run tried, so a snapshot rarely wraps by itself).
	rotate bool
}

var kernelCases = []kernelCase{
	// A 1024-block journal and data=journal: the log wraps repeatedly.
	{name: "ext3-1k-data-journal", mkfs: "mkfs.ext3",
		args: []string{"-b", "1024", "-J", "size=1"}, sizeKB: 32768, opts: "data=journal",
		fsyncs: 250, rotate: true},
	{name: "ext3-4k-ordered", mkfs: "mkfs.ext3", args: []string{"-b", "4096"},
		sizeKB: 65536, opts: "data=ordered"},
	{name: "ext3-1k-journal-checksum", mkfs: "mkfs.ext3", args: []string{"-b", "1024"},
		sizeKB: 32768, opts: "data=ordered,journal_checksum", wantCo: jbdCompatChecksum},
	// The kernel refuses journal_async_commit with data=ordered.
	{name: "ext3-4k-async-commit", mkfs: "mkfs.ext3", args: []string{"-b", "4096"},
		sizeKB: 65536, opts: "data=writeback,journal_async_commit",
		wantCo: jbdCompatChecksum, wantIn: jbdIncompatAsyncCommit},
	{name: "ext4-4k-64bit-csum-v3", mkfs: "mkfs.ext4",
		args: []string{"-b", "4096", "-O", "64bit,metadata_csum"}, sizeKB: 65536,
		opts: "data=ordered", wantIn: jbdIncompat64bit | jbdIncompatCsumV3},
	{name: "ext4-1k-csum-v3-data-journal", mkfs: "mkfs.ext4",
		args:   []string{"-b", "1024", "-J", "size=1", "-O", "^64bit,metadata_csum"},
		sizeKB: 32768, opts: "data=journal", wantIn: jbdIncompatCsumV3, fsyncs: 250, rotate: true},
}

func TestRecoverKernelJournals(t *testing.T) {
	needTool(t, "mount", "util-linux")
	for _, tc := range kernelCases {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfsImage(t, tc.mkfs, tc.sizeKB, tc.args...)
			snap := kernelSnapshot(t, img, tc.opts, tc.fsyncs)
			if tc.rotate {
				rotateLog(t, snap)
			}
			j, f := openImageJournal(t, snap)
			if j.incompat&tc.wantIn != tc.wantIn || j.compat&tc.wantCo != tc.wantCo {
				t.Fatalf("kernel journal features compat %#x incompat %#x, want %#x %#x",
					j.compat, j.incompat, tc.wantCo, tc.wantIn)
			}
			if !j.needsRecovery() {
				t.Fatal("needsRecovery() = false for an image copied while mounted")
			}
			f.Close()
			if stats := compareWithE2fsck(t, snap); tc.rotate && !stats.wrapped {
				t.Error("rotated log did not wrap")
			}
		})
	}
}

// kernelSnapshot mounts img with the kernel, runs a workload that
// creates, rewrites and deletes files and directories (deleting blocks
// logged by an earlier transaction makes jbd2 write revoke records), and
// returns a copy of the image taken after sync, before unmounting.
func kernelSnapshot(t *testing.T, img, opts string, fsyncs int) string {
	// The ext4 driver mounts ext3 images too; as "ext3" it refuses the
	// journal_checksum and journal_async_commit options.
	mnt, unmount := kernelMount(t, img, "ext4", opts)

	write := func(name string, size int) {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i*7 + len(name))
		}
		if err := os.WriteFile(filepath.Join(mnt, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 24 {
		dir := filepath.Join(mnt, fmt.Sprintf("dir%d/sub", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("f%d", i), 90_000+i*1000)
	}
	syscall.Sync()
	for i := range 24 {
		if i%2 == 0 {
			if err := os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("dir%d", i))); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(mnt, fmt.Sprintf("f%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 12 {
		write(fmt.Sprintf("dir%d/g", 2*i+1), 3000)
	}
	syscall.Sync()
	for i := range fsyncs {
		f, err := os.Create(filepath.Join(mnt, fmt.Sprintf("small%d", i%50)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(make([]byte, 1500+i))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	snap := filepath.Join(t.TempDir(), "snap.img")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snap, b, 0o644); err != nil {
		t.Fatal(err)
	}
	unmount()
	if out, _ := runCmdCode(t, "", "dumpe2fs", "-h", snap); !strings.Contains(out, "needs_recovery") {
		t.Logf("dumpe2fs of the snapshot:\n%s", out)
	}
	return snap
}
