package ext3

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCrashKernelJournal is the crash property with the kernel as the
// writer: the kernel's ext3 driver (data=ordered) makes, appends to,
// renames over and deletes files, fsyncing some; the image file is
// copied while it is still mounted, which is what a power cut right
// after the last fsync leaves (committed transactions still in the log).
// husk must refuse it read-only, replay it on a writable Open, show every
// fsynced file with its content, and leave it clean for e2fsck.
func TestCrashKernelJournal(t *testing.T) {
	crashKernelJournal(t, false)
}

// Bug (fixed): after replaying a kernel journal, husk kept the superblock's
// free block and inode counts, which the kernel does not update at each
// commit (it sums the group descriptors at mount), and Close writes them
// back: e2fsck -fn then says "Free blocks count wrong (26197,
// counted=25364)" and "Free inodes count wrong (8181, counted=8139)"
// (exit 0: e2fsck fixes these silently when it may), and Statfs is off
// by as much until then.
func TestCrashBugKernelReplayKeepsStaleFreeCounts(t *testing.T) {
	crashKernelJournal(t, true)
}

// crashKernelJournal runs the test; strict also fails on the superblock
// free counts that e2fsck -fn calls wrong but does not count as errors.
func crashKernelJournal(t *testing.T, strict bool) {
	needTool(t, "mount", "util-linux")
	for _, opts := range []string{"data=ordered", "data=journal"} {
		t.Run(opts, func(t *testing.T) {
			img := mkfsImage(t, "mkfs.ext3", 32768, "-b", "1024")
			snap, synced := crashKernelSnapshot(t, img, opts)

			fh, err := os.Open(snap)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := fh.Stat()
			_, err = Open(NewSection(fh, 0, st.Size()), st.Size(), Options{ReadOnly: true})
			fh.Close()
			if !errors.Is(err, ErrNeedsRecovery) {
				t.Fatalf("read-only Open of a kernel image with a live journal: %v, "+
					"want ErrNeedsRecovery", err)
			}

			f := crashOpenFile(t, snap, nil)
			for name, want := range synced {
				a, err := f.Lookup(RootIno, name)
				if err != nil {
					t.Errorf("fsynced %s after replay: %v", name, err)
					continue
				}
				got := make([]byte, a.Size)
				f.ReadAt(a.Ino, got, 0)
				if !bytes.Equal(got, want) {
					t.Errorf("fsynced %s after replay: %d bytes (hash %s), want %d (hash %s)",
						name, len(got), crashHash(got), len(want), crashHash(want))
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if strict {
				fsck(t, snap)
				return
			}
			if out, code := runCmdCode(t, "", "e2fsck", "-fn", snap); code != 0 {
				t.Fatalf("e2fsck -fn after replay and close: exit %d\n%s", code, out)
			}
		})
	}
}

// crashKernelSnapshot runs the workload on img mounted by the kernel and
// returns a copy taken after the last fsync, with the content of every
// file whose last change was fsynced.
func crashKernelSnapshot(t *testing.T, img, opts string) (string, map[string][]byte) {
	t.Helper()
	mnt, unmount := kernelMount(t, img, "ext3", opts)
	synced := map[string][]byte{}
	write := func(name string, data []byte, flag int, sync bool) {
		t.Helper()
		fh, err := os.OpenFile(filepath.Join(mnt, name), os.O_WRONLY|os.O_CREATE|flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(data); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := fh.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		name := fmt.Sprintf("f%d", i)
		data := crashData(uint64(i), 500+i*997)
		write(name, data, os.O_TRUNC, true)
		synced[name] = data
	}
	// Appends, fsynced.
	for i := 0; i < 40; i += 3 {
		name := fmt.Sprintf("f%d", i)
		more := crashData(uint64(100+i), 3000+i*311)
		write(name, more, os.O_APPEND, true)
		synced[name] = append(synced[name], more...)
	}
	// Atomic replace: temporary, fsync, rename over, fsync the directory.
	for i := 1; i < 40; i += 4 {
		name := fmt.Sprintf("f%d", i)
		data := crashData(uint64(200+i), 20000+i)
		write(name+".tmp", data, os.O_TRUNC, true)
		if err := os.Rename(filepath.Join(mnt, name+".tmp"), filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		synced[name] = data
	}
	// Deletes; the blocks they free are reused by the next files.
	for i := 2; i < 40; i += 5 {
		name := fmt.Sprintf("f%d", i)
		if err := os.Remove(filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		delete(synced, name)
	}
	for i := range 10 {
		name := fmt.Sprintf("g%d", i)
		data := crashData(uint64(300+i), 7000+i*13)
		write(name, data, os.O_TRUNC, true)
		synced[name] = data
	}
	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil { // makes the renames and deletes durable
		t.Fatal(err)
	}
	d.Close()
	snap := filepath.Join(t.TempDir(), "powercut.img")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot are not in it and must not matter.
	write("f0", crashData(999, 5000), os.O_APPEND, false)
	unmount()
	return snap, synced
}
