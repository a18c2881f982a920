package fusefs

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCreateWriteOnly: a file made write-only is written without the page
// cache: one WRITE per write(2) even when it does not start on a page
// boundary, and no GETXATTR of security.capability before each.
func TestCreateWriteOnly(t *testing.T) {
	f := newFixture(t, 1)
	c := &opCounter{ops: map[string]int{}}
	mnt, _ := f.mount(func(o *Options) { o.Debug, o.Logger = true, slog.New(c) })
	p := filepath.Join(mnt, "f")
	fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0644)
	must(t, err)
	data := make([]byte, 5512)
	for i := range data {
		data[i] = byte(i)
	}
	for _, chunk := range [][]byte{data[:512], data[512:]} { // the second spans two pages
		if _, err := fd.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	must(t, fd.Close())
	c.mu.Lock()
	writes, getxattrs := c.ops["WRITE"], c.ops["GETXATTR"]
	c.mu.Unlock()
	if writes != 2 || getxattrs != 0 {
		t.Errorf("2 write(2) calls made %d WRITE and %d GETXATTR requests, want 2 and 0",
			writes, getxattrs)
	}
	got, err := os.ReadFile(p)
	must(t, err)
	if string(got) != string(data) {
		t.Errorf("read back %d bytes, differing from the %d written", len(got), len(data))
	}
	up, err := os.ReadFile(filepath.Join(f.upper(), "f"))
	must(t, err)
	if string(up) != string(data) {
		t.Errorf("upper holds %d bytes, differing from the %d written", len(up), len(data))
	}
}

// TestWriteKillsSetID: a write by an unprivileged user clears S_ISUID, and
// S_ISGID where the group may execute, whether the file was made
// write-only (direct I/O: the server clears them, asked by
// FUSE_WRITE_KILL_SUIDGID) or read-write (page cache: the kernel does).
func TestWriteKillsSetID(t *testing.T) {
	f := newFixture(t, 1)
	mnt, _ := f.mount(func(o *Options) { o.AllowOther = true })
	must(t, os.Chmod(filepath.Dir(mnt), 0755))
	must(t, os.Chmod(mnt, 0777))
	for _, tc := range []struct {
		name, open string
		mode, want uint32
	}{
		{"wronly-suid-sgid", "3>", 06755, 0755},
		{"wronly-sgid-no-gx", "3>", 02745, 02745},
		{"wronly-plain", "3>", 0644, 0644},
		{"rdwr-suid-sgid", "3<>", 06755, 0755},
		{"rdwr-sgid-no-gx", "3<>", 02745, 02745},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(mnt, tc.name)
			// Open (creating), set the mode, then write through the
			// descriptor opened before, as user rootlessUID.
			script := fmt.Sprintf("exec %s%s && chmod %o %s && printf data >&3",
				tc.open, p, tc.mode, p)
			cmd := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", rootlessUID),
				fmt.Sprintf("--regid=%d", rootlessUID), "--clear-groups", "sh", "-c", script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s (setpriv is in util-linux)", script, err, out)
			}
			for _, q := range []string{p, filepath.Join(f.upper(), tc.name)} {
				if got := stat(t, q).Mode & 07777; got != tc.want {
					t.Errorf("%s: mode %04o after the write, want %04o", q, got, tc.want)
				}
			}
		})
	}
}

// TestWriteOnlyCoherent: a reader that cached a page of a file sees what a
// write-only (direct I/O) handle writes into that page afterwards, as
// tail -f does with a growing log.
func TestWriteOnlyCoherent(t *testing.T) {
	f := newFixture(t, 1)
	mnt, _ := f.mount()
	p := filepath.Join(mnt, "log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0644)
	must(t, err)
	defer w.Close()
	r, err := os.Open(p)
	must(t, err)
	defer r.Close()
	buf := make([]byte, 64)
	for _, line := range []string{"first\n", "second\n", "third\n"} {
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		n, err := r.Read(buf) // from where the last read ended, in the same page
		if err != nil || string(buf[:n]) != line {
			t.Fatalf("reader got %q, %v after %q was written", buf[:n], err, line)
		}
	}
}

// TestSetattrCached: the attributes a chmod or utimes returns are kept by
// the kernel like a GETATTR's (the union is the only writer), so the stat
// after them is not a round trip.
func TestSetattrCached(t *testing.T) {
	f := newFixture(t, 1)
	c := &opCounter{ops: map[string]int{}}
	mnt, _ := f.mount(func(o *Options) { o.Debug, o.Logger = true, slog.New(c) })
	p := filepath.Join(mnt, "f")
	must(t, os.WriteFile(p, []byte("x"), 0644))
	must(t, os.Chmod(p, 0600))
	c.mu.Lock()
	before := c.ops["GETATTR"]
	c.mu.Unlock()
	st, err := os.Stat(p)
	must(t, err)
	c.mu.Lock()
	getattrs := c.ops["GETATTR"] - before
	c.mu.Unlock()
	if st.Mode().Perm() != 0600 || getattrs != 0 {
		t.Errorf("stat after chmod: mode %v and %d GETATTR requests, want 0600 and 0",
			st.Mode().Perm(), getattrs)
	}
}
