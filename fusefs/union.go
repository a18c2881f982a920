package fusefs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Union serves the union of its layers through FUSE. Create it with [New],
// then [Union.Mount] it.
type Union struct {
	opts   Options
	log    *slog.Logger
	upper  Writable // nil for a read-only union
	layers []Layer  // layers[0] is the upper (nil if none), then the lowers
	ids    *IDMap
	root   *node

	// renameMu makes renames between two directories (and other
	// changes that lock two directories) one at a time; see locking.go.
	renameMu sync.Mutex
	// warnMu guards warned, the layer errors already logged (errno.go).
	warnMu sync.Mutex
	warned map[string]bool
	// linkMu makes copy-ups of hard-linked lower files one at a time
	// and guards linkIndex.
	linkMu sync.Mutex
	// linkIndex lists, per lower layer, the names of its hard-linked
	// files by inode; built on the first copy-up of such a file.
	// Protected by linkMu.
	linkIndex map[int]map[uint64][][]string
	tmpSeq    atomic.Uint64 // see workName
	workTag   string

	// stMu guards the bookkeeping below; it is a leaf lock.
	stMu sync.Mutex
	// copied maps the layer-local inode number of an upper inode made by
	// a copy-up to the stable inode number its node had before, so a
	// later lookup of the upper inode reports the same number.
	copied map[uint64]uint64
	// links maps a hard-linked lower inode (layer, ino) to its upper copy,
	// so that its other names become links to that copy.
	links map[layerIno]Node
	// gens holds what is known of each upper inode number that nodes
	// stand for, by layer-local number (generation.go).
	gens map[uint64]*upperUse
	gen  uint64
	// opaqueTrusted is 1 when the upper accepts trusted.* xattrs, -1
	// when it refused them, 0 before the first try.
	opaqueTrusted int
	// hideTrusted leaves trusted.* names out of listxattr: served from a
	// user namespace, nobody who asks may read them (the kernel answers
	// their getxattr with ENODATA itself), as ext4 lists them only to
	// CAP_SYS_ADMIN. Listed, `cp --preserve=xattr` failed on them.
	hideTrusted bool

	srvMu     sync.Mutex
	server    *fuse.Server
	mountDir  string
	unmounted bool
	ra        readahead // of large image files (readahead.go)
	// openless is set once the kernel opens files without OPEN.
	openless atomic.Bool
	ownTids  sync.Map // thread ids of this process (Union.ownThread)
}

// layerIno names an inode of one layer by its layer-local inode number.
type layerIno struct {
	layer int
	ino   uint64
}

// New builds a union of opts.Lowers under opts.Upper.
func New(opts Options) (*Union, error) {
	if len(opts.Lowers) == 0 && opts.Upper == nil {
		return nil, errors.New("fusefs: union has no layers")
	}
	if len(opts.Lowers) > 0xfffe {
		return nil, fmt.Errorf("fusefs: %d layers, at most 65534", len(opts.Lowers))
	}
	u := &Union{opts: opts, log: opts.Logger, upper: opts.Upper, ids: &opts.IDMap,
		copied: map[uint64]uint64{}, links: map[layerIno]Node{}, gens: map[uint64]*upperUse{},
		workTag: newWorkTag(), hideTrusted: !inInitialUserNS()}
	u.layers = append([]Layer{nil}, opts.Lowers...)
	if opts.Upper != nil {
		u.layers[0] = opts.Upper
	}
	// A node the kernel resolved before its file was freed goes stale the
	// moment the number is handed out again (node.Open).
	switch up := opts.Upper.(type) {
	case *Ext3Layer:
		up.fs.OnNewInode(func(ino uint32) { u.newUpperInode(uint64(ino)) })
	case *DirLayer:
		up.OnNewInode(u.newUpperInode)
	}
	// A skeleton's root shows the attributes of the root below it, as
	// its directories do for the directories they cover.
	for i, l := range opts.Lowers {
		if m, ok := l.(*MemLayer); ok && i+1 < len(opts.Lowers) {
			below := opts.Lowers[i+1]
			if a, err := below.Getattr(below.Root()); err == nil {
				m.copyAttr(m.Root(), a)
			}
		}
	}
	u.cleanWork()
	root, err := u.newRoot()
	if err != nil {
		return nil, err
	}
	u.root = root
	return u, nil
}

// newRoot builds the root node: the roots of every layer, merged down to
// the first opaque one.
func (u *Union) newRoot() (*node, error) {
	n := &node{u: u}
	for l, layer := range u.layers {
		if layer == nil {
			continue
		}
		r := layer.Root()
		a, err := layer.Getattr(r)
		if err != nil {
			return nil, fmt.Errorf("fusefs: root of layer %d: %w", l, err)
		}
		if len(n.refs) == 0 {
			n.ino = stableIno(l, a.Ino)
		}
		n.refs = append(n.refs, layerRef{l, r})
		if l+1 < len(u.layers) && u.isOpaque(l, r) {
			break
		}
	}
	return n, nil
}

// stableIno is the inode number the kernel sees for inode ino of layer l:
// the layer index plus one in the top 16 bits, so layers never collide
// with each other nor with go-fuse's root number 1.
func stableIno(l int, ino uint64) uint64 {
	return uint64(l+1)<<48 | ino&(1<<48-1)
}

// attrTimeout is how long the kernel keeps attributes (Options.AttrTimeout).
func (u *Union) attrTimeout() time.Duration {
	if u.opts.AttrTimeout == 0 {
		return DefaultTimeout
	}
	return u.opts.AttrTimeout
}

// Mount mounts the union at dir and serves it in background goroutines.
func (u *Union) Mount(dir string) error {
	u.srvMu.Lock()
	defer u.srvMu.Unlock()
	if u.server != nil {
		return errors.New("fusefs: union already mounted")
	}
	entry, attr := u.opts.EntryTimeout, u.attrTimeout()
	if entry == 0 {
		entry = DefaultTimeout
	}
	neg := entry
	fopts := &fs.Options{
		EntryTimeout: &entry, AttrTimeout: &attr, NegativeTimeout: &neg,
		RootStableAttr:  &fs.StableAttr{Ino: u.root.ino},
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			AllowOther: u.opts.AllowOther, FsName: "husk", Name: "husk",
			Options:      []string{"default_permissions"},
			MaxReadAhead: 1 << 20,
			// Symlinks never change (a new one is a new inode): let the
			// kernel keep their targets instead of asking every time.
			EnableSymlinkCaching: true,
			// go-fuse gives every request being read or served a
			// buffer of MaxWrite bytes, kept resident by their reuse:
			// 1 MiB held 2-3 MiB more of the server's memory on the
			// untar than 512 KiB and made 1 GiB reads and writes no
			// faster; 256 KiB slowed a 1 GiB direct-I/O write by 15%.
			MaxWrite:          512 << 10,
			DirectMountStrict: u.opts.DirectMount,
			Debug:             u.opts.Debug,
		},
	}
	if u.upper == nil {
		fopts.MountOptions.Options = append(fopts.MountOptions.Options, "ro")
	}
	if u.log != nil {
		// go-fuse's request trace (Debug) goes to MountOptions.Logger.
		fopts.Logger = log.New(logWriter{u.log}, "", 0)
		fopts.MountOptions.Logger = fopts.Logger
	}
	srv, err := mount(dir, u.root, fopts, u.opts.Load)
	if err != nil {
		return fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	u.server, u.mountDir = srv, dir
	if u.opensWithoutServer() && srv.KernelSettings().Flags&fuse.CAP_NO_OPEN_SUPPORT != 0 {
		u.openless.Store(true)
	}
	u.ra.openRoot(dir)
	return nil
}

// logWriter sends go-fuse's log lines to the slog logger.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Debug(string(p))
	return len(p), nil
}

// Wait blocks until the union is unmounted.
func (u *Union) Wait() {
	u.srvMu.Lock()
	srv := u.server
	u.srvMu.Unlock()
	if srv != nil {
		srv.Wait()
	}
}

// Sync makes everything written to the upper durable.
func (u *Union) Sync() error {
	if u.upper == nil {
		return nil
	}
	return u.upper.Sync()
}

// Unmount unmounts the union (lazily if it is busy), waits for the server
// to stop and syncs the upper. Calling it again does nothing.
func (u *Union) Unmount() error {
	u.srvMu.Lock()
	defer u.srvMu.Unlock()
	if u.server == nil || u.unmounted {
		return nil
	}
	u.unmounted = true
	u.ra.close() // its advices hold files open in the mount
	// go-fuse unmounts whatever is on top of the mount point and then
	// waits for its server to stop: a mount someone stacked there would
	// be taken off instead and the wait would never end. So the whole
	// of it is bounded.
	done := make(chan error, 1)
	go func() {
		err := u.server.Unmount()
		if err != nil {
			// Busy: detach it so that it goes away with its last user.
			// EINVAL: no longer mounted (someone else unmounted it).
			// ENOENT: the mount point was removed, which detached the
			// mount (from another mount namespace, a tmp cleaner's
			// rmdir can); the server stops with the mount's last user.
			lerr := lazyUnmount(u.mountDir)
			if lerr != nil && !isErrno(lerr, syscall.EINVAL) && !isErrno(lerr, syscall.ENOENT) {
				done <- fmt.Errorf("fusefs: unmount: %w (lazy: %v)", err, lerr)
				return
			}
		}
		u.server.Wait()
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-time.After(unmountWait):
		return fmt.Errorf("fusefs: unmount %s: the server did not stop within %v "+
			"(is something mounted over it?)", u.mountDir, unmountWait)
	}
	return u.Sync()
}

// unmountWait bounds Unmount.
var unmountWait = 30 * time.Second

// errnoOf returns the errno in err, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
