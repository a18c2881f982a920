package fusefs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixInapplicable lists posixtest tests that do not apply, and why.
var posixInapplicable = map[string]string{
	// It expects a second descriptor of the same process to conflict with
	// the first one's POSIX lock. POSIX record locks belong to the
	// process, so they do not conflict (also on ext4); the union leaves
	// locks to the kernel, which gives exactly that. TestLocks checks
	// locks between processes.
	"FcntlFlockLocksFile": "POSIX locks of one process do not conflict",
}

// TestPosix runs go-fuse's POSIX suite against a union of a directory
// upper over a directory lower. Two tests skip themselves here:
// RenameOpenDir (fstat of a removed open directory, go-fuse issue 55) and
// XAttrLarge (the host's ext4 refuses xattrs that large).
func TestPosix(t *testing.T) {
	for name, fn := range posixtest.All {
		if why, ok := posixInapplicable[name]; ok {
			t.Logf("%s not run: %s", name, why)
			continue
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 1)
			// The suite runs in a directory that a lower provides, so
			// that everything it does copies that directory up first.
			tree(t, f.lowers[0], "sub/")
			mnt, _ := f.mount()
			fn(t, mnt+"/sub")
		})
	}
}

func posixAll() map[string]func(*testing.T, string) { return posixtest.All }
