package fusefs

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMapID(t *testing.T) {
	rootless := []IDRange{{Container: 1000, Server: 0, Size: 1}}
	multi := []IDRange{{Container: 0, Server: 100000, Size: 1000},
		{Container: 5000, Server: 7, Size: 2}}
	for _, c := range []struct {
		name     string
		ranges   []IDRange
		id       uint32
		toServer bool
		want     uint32
	}{
		{"identity", nil, 42, true, 42},
		{"user to server root", rootless, 1000, true, 0},
		{"image root unmapped", rootless, 0, true, overflowID},
		{"server root to user", rootless, 0, false, 1000},
		{"server other unmapped", rootless, 5, false, overflowID},
		{"range start", multi, 0, true, 100000},
		{"range end", multi, 999, true, 100999},
		{"past range", multi, 1000, true, overflowID},
		{"second range", multi, 5001, true, 8},
		{"back second", multi, 8, false, 5001},
	} {
		if got := mapID(c.ranges, c.id, c.toServer); got != c.want {
			t.Errorf("%s: mapID(%d, toServer=%v) = %d, want %d", c.name, c.id, c.toServer, got, c.want)
		}
	}
}

// The rootless layout: the user's files (stored 1000) appear as server
// uid 0, image root (stored 0) as 65534, and what server uid 0 creates is
// stored as 1000.
func TestIDMapMounted(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "rootfile=r", "userfile=u")
	must(t, os.Chown(filepath.Join(f.lowers[0], "userfile"), 1000, 1000))
	mnt, _ := f.mount(func(o *Options) {
		o.IDMap = IDMap{UIDs: []IDRange{{Container: 1000, Server: 0, Size: 1}},
			GIDs: []IDRange{{Container: 1000, Server: 0, Size: 1}}}
	})
	if st := stat(t, filepath.Join(mnt, "userfile")); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("userfile owner %d:%d, want 0:0", st.Uid, st.Gid)
	}
	if st := stat(t, filepath.Join(mnt, "rootfile")); st.Uid != overflowID {
		t.Errorf("rootfile owner %d, want %d", st.Uid, overflowID)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("n"), 0644))
	if st := stat(t, filepath.Join(f.upper(), "new")); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("upper new stored as %d:%d, want 1000:1000", st.Uid, st.Gid)
	}
	// chown to the server's 0 stores the container's 1000.
	must(t, os.Chown(filepath.Join(mnt, "rootfile"), 0, 0))
	if st := stat(t, filepath.Join(f.upper(), "rootfile")); st.Uid != 1000 {
		t.Errorf("chowned rootfile stored as %d, want 1000", st.Uid)
	}
}

// Without --fakeroot every file is shown as the user's (Squash): a chown
// to the owner and group a file is shown with changes nothing, and the
// file stays in the image with its owner. chown -R to oneself had copied
// every file up and stored the user as its owner; a later --fakeroot run
// found the image's root and _apt files owned by the user.
func TestChownToShownOwner(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "d/f=image", "setuid=s")
	must(t, os.Chown(filepath.Join(f.lowers[0], "d", "f"), 0, 42))
	must(t, unix.Chmod(filepath.Join(f.lowers[0], "setuid"), 0o4755))
	mnt, _ := f.mount(func(o *Options) {
		o.IDMap = IDMap{UIDs: []IDRange{{Container: 1000, Server: 0, Size: 1}},
			GIDs: []IDRange{{Container: 1000, Server: 0, Size: 1}}, Squash: true}
	})
	for _, p := range []string{"d", "d/f"} {
		must(t, os.Chown(filepath.Join(mnt, p), 0, 0)) // shown as 0:0 already
		if _, err := os.Lstat(filepath.Join(f.upper(), p)); err == nil {
			t.Errorf("%s was copied up by a chown to its shown owner", p)
		}
	}
	// Still a change of mode: chown clears the set-user-ID bit.
	must(t, os.Chown(filepath.Join(mnt, "setuid"), 0, 0))
	if st := stat(t, filepath.Join(mnt, "setuid")); st.Mode&0o7777 != 0o755 {
		t.Errorf("setuid file mode %o after chown, want 755", st.Mode&0o7777)
	}
	if st := stat(t, filepath.Join(f.upper(), "setuid")); st.Uid != 0 {
		t.Errorf("setuid file stored as owned by %d after chown, want 0", st.Uid)
	}
}

// New files in a set-gid directory take its group; new directories
// also inherit the set-gid bit.
func TestSetgidDir(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "g/")
	must(t, os.Chown(filepath.Join(f.lowers[0], "g"), 0, 4321))
	must(t, unix.Chmod(filepath.Join(f.lowers[0], "g"), 02775))
	mnt, _ := f.mount()
	must(t, os.WriteFile(filepath.Join(mnt, "g/f"), nil, 0644))
	must(t, unix.Mkdir(filepath.Join(mnt, "g/d"), 0755))
	if st := stat(t, filepath.Join(mnt, "g/f")); st.Gid != 4321 {
		t.Errorf("g/f gid %d, want 4321", st.Gid)
	}
	if st := stat(t, filepath.Join(mnt, "g/d")); st.Gid != 4321 || st.Mode&unix.S_ISGID == 0 {
		t.Errorf("g/d gid %d mode %o, want 4321 and set-gid", st.Gid, st.Mode)
	}
}

func TestMountpoint(t *testing.T) {
	f := newFixture(t, 1)
	tree(t, f.lowers[0], "etc/hosts=h", "usr/")
	mem := NewMemLayer()
	mnt, u := f.mount(func(o *Options) { o.Lowers = append(o.Lowers[:1:1], mem) })
	// Cache negative entries and listings first.
	if exists(filepath.Join(mnt, "mnt")) || exists(filepath.Join(mnt, "etc/resolv.conf")) {
		t.Fatal("mount points exist before they are added")
	}
	_, _ = os.ReadDir(filepath.Join(mnt, "etc"))
	must(t, u.Mountpoint("/mnt/data/x", true))
	must(t, u.Mountpoint("/etc/resolv.conf", false))
	must(t, u.Mountpoint("/etc/hosts", false)) // exists: not added
	must(t, u.Mountpoint("/usr", true))
	wantListing(t, mnt, "etc/", "etc/hosts=h", "etc/resolv.conf=", "mnt/", "mnt/data/",
		"mnt/data/x/", "usr/")
	if _, _, err := mem.Lookup(mem.Root(), "usr"); err == nil {
		t.Error("usr added to the skeleton although the image has it")
	}
	wantListing(t, f.upper())
}

// Many goroutines walk and write at once: nothing hangs, nothing is lost.
func TestConcurrent(t *testing.T) {
	f := newFixture(t, 1)
	var spec []string
	for i := 0; i < 20; i++ {
		for j := 0; j < 20; j++ {
			spec = append(spec, "d"+itoa(i)+"/f"+itoa(j)+"=x")
		}
	}
	tree(t, f.lowers[0], spec...)
	mnt, u := f.mount()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(2)
		go func(w int) { // writer: copy-ups, creates, renames
			defer wg.Done()
			for i := 0; i < 20; i++ {
				d := filepath.Join(mnt, "d"+itoa(i))
				name := filepath.Join(d, "w"+itoa(w))
				if err := os.WriteFile(name, []byte(itoa(w)), 0644); err != nil {
					t.Error(err)
					return
				}
				if err := os.Rename(name, name+"r"); err != nil {
					t.Error(err)
					return
				}
				fh, err := os.OpenFile(filepath.Join(d, "f"+itoa(w)), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Error(err)
					return
				}
				fh.WriteString(itoa(w))
				fh.Close()
			}
		}(w)
		go func() { // reader: walks
			defer wg.Done()
			for k := 0; k < 5; k++ {
				filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
					if err == nil && fi.Mode().IsRegular() {
						os.ReadFile(p)
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
	must(t, u.Unmount())
	mnt2, _ := f.mount()
	for i := 0; i < 20; i++ {
		for w := 0; w < 8; w++ {
			d := filepath.Join(mnt2, "d"+itoa(i))
			if b, err := os.ReadFile(filepath.Join(d, "w"+itoa(w)+"r")); err != nil || string(b) != itoa(w) {
				t.Errorf("d%d/w%dr: %q %v", i, w, b, err)
			}
			if b, _ := os.ReadFile(filepath.Join(d, "f"+itoa(w))); string(b) != "x"+itoa(w) {
				t.Errorf("d%d/f%d = %q", i, w, b)
			}
		}
	}
}

func TestSquash(t *testing.T) {
	m := IDMap{UIDs: []IDRange{{Container: 1000, Server: 0, Size: 1}}, Squash: true}
	for id, want := range map[uint32]uint32{1000: 0, 0: 0, 65534: 0, 5: 0} {
		if got := m.uidToServer(id); got != want {
			t.Errorf("squashed uid %d -> %d, want %d", id, got, want)
		}
	}
	m.Squash = false
	if got := m.uidToServer(0); got != overflowID {
		t.Errorf("unsquashed uid 0 -> %d, want %d", got, overflowID)
	}
	if got := (&IDMap{}).gidToServer(77); got != 77 {
		t.Errorf("identity gid 77 -> %d", got)
	}
}
