package fusefs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
)

// The work directory holds what the union makes before it has a name in
// the tree: a copy-up until it is renamed into place, and an O_TMPFILE
// file until it is linked in or its last handle closes. A server killed
// meanwhile leaves it there.

// workPrefix starts the name of everything the union makes in the work
// directory.
const workPrefix = "#husk-"

// workName returns a new name in the work directory for kind ("copyup",
// "tmpfile"). Names carry a tag of this union as well as a count: the
// count starts again with every mount, and a name a killed server left
// behind (in a directory upper, which nobody cleans) made a later
// copy-up or O_TMPFILE that drew it fail with EEXIST.
func (u *Union) workName(kind string) string {
	return fmt.Sprintf("%s%s-%s-%d", workPrefix, kind, u.workTag, u.tmpSeq.Add(1))
}

// newWorkTag returns a random tag for workName.
func newWorkTag() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cleanWork removes what an earlier union left in the work directory of
// an overlay image. Left, an O_TMPFILE file open when its server was
// killed kept its space for good (100 MiB in a trial), named but in no
// tree that e2fsck or a user could see. An image is the union's alone
// (it is locked, and ext3 has one writer) where a host directory upper
// may be another union's too, whose files in flight this would delete.
func (u *Union) cleanWork() {
	if _, ok := u.upper.(*Ext3Layer); !ok || u.opts.WorkDir == 0 {
		return
	}
	ents, err := u.upper.ReadDir(u.opts.WorkDir)
	for _, e := range ents {
		if err == nil && strings.HasPrefix(e.Name, workPrefix) {
			err = u.removeAll(u.opts.WorkDir, e, 0)
		}
	}
	if err != nil && u.log != nil {
		u.log.Warn("fusefs: cleaning the work directory", slog.Any("err", err))
	}
}

// removeAll removes entry e of dir and, for a directory, all below it.
func (u *Union) removeAll(dir Node, e Dirent, depth int) error {
	if e.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return u.upper.Unlink(dir, e.Name)
	}
	if depth > maxDepth {
		return fmt.Errorf("work directory: %q: deeper than %d: %w", e.Name, maxDepth,
			syscall.ELOOP)
	}
	ents, err := u.upper.ReadDir(e.Node)
	for _, c := range ents {
		if err == nil {
			err = u.removeAll(e.Node, c, depth+1)
		}
	}
	if err != nil {
		return err
	}
	return u.upper.Rmdir(dir, e.Name)
}
