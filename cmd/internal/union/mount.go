package union

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/cmd/internal/logfmt"
	"github.com/husk-project/husk/ext3"
	"github.com/husk-project/husk/fusefs"
	"github.com/husk-project/husk/internal/procs"
	"github.com/husk-project/husk/sandbox"
	"github.com/husk-project/husk/squash"
)

// Mounter implements sandbox.Mounter for husk's layer plans.
type Mounter struct{}

// compiles only if Mounter is a sandbox.Mounter.
var _ sandbox.Mounter = Mounter{}

// mounted is a mounted union and what must be closed after it.
type mounted struct {
	u       *fusefs.Union
	closers []io.Closer // closed in order after unmounting
	tmpfs   string      // --writable-tmpfs mount point, or ""
	log     *slog.Logger
	warm    *warmer // reading the payload's programs ahead, or nil
	// stopProcs ends the sizing of the scheduler to the union's load.
	stopProcs context.CancelFunc
}

// Mount implements sandbox.Mounter.
func (Mounter) Mount(spec *sandbox.Spec, files []*os.File, target string) (sandbox.Mounted,
	error) {
	var plan image.Plan
	if err := json.Unmarshal(spec.Union, &plan); err != nil {
		return nil, fmt.Errorf("union: bad layer plan: %w", err)
	}
	// Stage 1's stderr is husk's: warnings about layer errors met while
	// serving (a corrupt block, say) reach the user as WARNING lines.
	log := logfmt.New(os.Stderr, spec.Debug)
	m := &mounted{log: log}
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()

	ids := idMap(spec)
	b := builder{files: files, ids: ids, m: m, hosted: spec.Fusermount,
		cacheBytes: plan.CacheBytes}
	opts := fusefs.Options{IDMap: ids, DirectMount: true, AllowOther: true,
		Logger: log,
		// A setup that fails on a damaged image then names the image
		// (sandbox.ImageError), reported before the kernel's EIO.
		OnLayerError: func(le *fusefs.LayerError) bool {
			return sandbox.ReportImageFault(le.Image, le.Err)
		},
		Debug: spec.Debug && os.Getenv("HUSK_FUSE_DEBUG") != "",
		Load:  procs.NewLoad()}
	fusermountOptions(spec, &opts)
	for i, l := range plan.Lowers {
		layer, err := b.lower(l)
		if err != nil {
			return nil, err
		}
		// The skeleton of mount points missing from the image sits just
		// above the root filesystem, Apptainer's overlay-lowerdir.
		if i == len(plan.Lowers)-1 {
			opts.Lowers = append(opts.Lowers, fusefs.NewMemLayer())
		}
		opts.Lowers = append(opts.Lowers, layer)
	}
	if len(opts.Lowers) == 0 {
		// A writable sandbox directory alone: mount points still go to a
		// skeleton, not into the user's directory.
		opts.Lowers = append(opts.Lowers, fusefs.NewMemLayer())
	}
	switch {
	case plan.Upper != nil:
		up, work, err := b.upper(*plan.Upper)
		if err != nil {
			return nil, err
		}
		opts.Upper, opts.WorkDir = up, work
	case plan.WritableTmpfs:
		up, work, err := b.tmpfsUpper(target, plan.TmpfsSize)
		if err != nil {
			return nil, err
		}
		opts.Upper, opts.WorkDir = up, work
	}

	u, err := fusefs.New(opts)
	if err != nil {
		return nil, fmt.Errorf("union: %w", err)
	}
	if err := u.Mount(target); err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("union: %w (is /dev/fuse mode 0666? root: chmod 0666 "+
				"/dev/fuse)", err)
		}
		return nil, fmt.Errorf("union: %w", err)
	}
	m.u = u
	// Round trips one at a time are faster on one P: see package procs.
	ctx, cancel := context.WithCancel(context.Background())
	m.stopProcs = cancel
	go procs.Govern(ctx, opts.Load, 0)
	if len(spec.Programs) > 0 {
		m.warm = startWarm(target, spec.Programs, log)
	}
	ok = true
	return m, nil
}

// idMap maps the FUSE server's view (stage 1: root is the user) to what
// the container sees and the layers store.
//
// Without --fakeroot the user's files are stored with the user's ids, and
// the image's root-owned files are shown as the user's too, as Apptainer's
// squashfuse -o uid=U,gid=G shows image files (COMPAT §3.5): the user can
// then change the image through the overlay the way Apptainer users can.
// With --fakeroot it is the other way round: root's files are root's and
// the user's own files (an overlay made without --fakeroot) show as
// root's, as in a root-mapped user namespace.
// The first range decides how new files are stored.
//
// With --fakeroot and subordinate ids, stage 1's namespace maps 0..N (see
// sandbox.MappedIDs): the server's view is the container's, every owner
// is stored as it is (a chown to 100 stores 100), and an owner beyond N
// shows as nobody, which the namespace maps, as the kernel shows it.
func idMap(spec *sandbox.Spec) fusefs.IDMap {
	if fullFakeroot(spec) {
		if uids, gids := sandbox.MappedIDs(); uids > 1 && gids > 1 {
			return fusefs.IDMap{
				UIDs: []fusefs.IDRange{{Container: 0, Server: 0, Size: uids}},
				GIDs: []fusefs.IDRange{{Container: 0, Server: 0, Size: gids}},
			}
		}
	}
	uid, gid := spec.UID, spec.GID
	if spec.Fakeroot {
		uid, gid = 0, 0
	}
	suid, sgid := serverIDs(spec)
	// Squash: every other owner (an image's _apt or man files, say) is
	// shown as the first range's owner too. Shown as nobody, the kernel
	// would refuse to delete or rename them with EOVERFLOW.
	m := fusefs.IDMap{
		UIDs:   []fusefs.IDRange{{Container: uid, Server: suid, Size: 1}},
		GIDs:   []fusefs.IDRange{{Container: gid, Server: sgid, Size: 1}},
		Squash: true,
	}
	other := func(ids []fusefs.IDRange, id uint32) []fusefs.IDRange {
		if id == ids[0].Container {
			return ids
		}
		return append(ids, fusefs.IDRange{Container: id, Server: ids[0].Server, Size: 1})
	}
	if spec.Fakeroot {
		m.UIDs, m.GIDs = other(m.UIDs, spec.UID), other(m.GIDs, spec.GID)
	} else {
		m.UIDs, m.GIDs = other(m.UIDs, 0), other(m.GIDs, 0)
	}
	return m
}

// Mountpoint implements sandbox.Mounted.
func (m *mounted) Mountpoint(path string, dir bool) error {
	return m.u.Mountpoint(path, dir)
}

// Unmount implements sandbox.Mounted: unmount, sync, then close every
// layer so the ext3 journals are checkpointed and the images clean.
func (m *mounted) Unmount() error {
	var errs []error
	if m.warm != nil {
		m.warm.Stop()
		m.warm = nil
	}
	if m.u != nil {
		if err := m.u.Unmount(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.close())
	return errors.Join(distinct(errs)...)
}

// namedCloser closes an image's file system, naming the image in an error.
type namedCloser struct {
	name string
	c    io.Closer
}

func (n namedCloser) Close() error {
	if err := n.c.Close(); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	return nil
}

// distinct drops nil errors and each error another one already tells
// (a failed commit fails the union's last sync, and again, with the
// image's name, its file system's close).
func distinct(errs []error) []error {
	var out []error
	for i, e := range errs {
		if e == nil {
			continue
		}
		told := false
		for j, o := range errs {
			if j != i && o != nil && strings.Contains(o.Error(), e.Error()) &&
				(o.Error() != e.Error() || j < i) {
				told = true
				break
			}
		}
		if !told {
			out = append(out, e)
		}
	}
	return out
}

// close closes the layers and the tmpfs.
func (m *mounted) close() error {
	if m.stopProcs != nil {
		m.stopProcs()
	}
	var errs []error
	for _, c := range m.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.closers = nil
	if m.tmpfs != "" {
		// ENOENT: its directory was removed, which detached it (the
		// session directory it lies in, by a cleaner of temporary files).
		err := unix.Unmount(m.tmpfs, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("union: unmount %s: %w", m.tmpfs, err))
		}
		os.Remove(m.tmpfs)
		m.tmpfs = ""
	}
	return errors.Join(errs...)
}

// builder makes layers from plan entries.
type builder struct {
	files []*os.File
	ids   fusefs.IDMap
	m     *mounted
	// hosted is sandbox's fusermount3 mode (fusermount.go).
	hosted bool
	// cacheBytes is each squashfs layer's cache budget; 0: the default.
	cacheBytes int64
}

func (b *builder) file(l image.Layer) (*os.File, error) {
	if l.File < 0 || l.File >= len(b.files) {
		return nil, fmt.Errorf("union: layer %s: file %d of %d", l.Path, l.File, len(b.files))
	}
	return b.files[l.File], nil
}

// lower builds a read-only layer.
func (b *builder) lower(l image.Layer) (fusefs.Layer, error) {
	switch l.Kind {
	case image.LayerSquashfs:
		f, err := b.file(l)
		if err != nil {
			return nil, err
		}
		sec := l.Section
		opts := &squash.Options{MemoryBytes: b.cacheBytes}
		fs, err := squash.Open(io.NewSectionReader(f, sec.Offset, sec.Size), sec.Size, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(l), err)
		}
		b.m.log.Debug("squashfs layer", "image", describe(l), "compression", fs.Compression(),
			"decoder", fs.Decoder(), "block", fs.BlockSize(), "inodes", fs.Inodes(),
			"cache", fs.MemoryBytes())
		return fusefs.NewSquashLayer(fs).Named(describe(l)).Backed(f, sec.Offset), nil
	case image.LayerExt3:
		fs, err := b.ext3(l, true)
		if err != nil {
			return nil, err
		}
		if err := checkOverlayDirs(fs, false); err != nil {
			return nil, fmt.Errorf("%s: %w", describe(l), err)
		}
		layer, _, err := fusefs.NewExt3Layer(fs, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(l), err)
		}
		return layer.Named(describe(l)), nil
	case image.LayerDir:
		return b.dir(l.Path)
	case image.LayerDirOverlay:
		// A read-only directory overlay contributes upper/ when it has
		// one, else the directory itself (COMPAT §3.3).
		p := filepath.Join(l.Path, "upper")
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			p = l.Path
		}
		return b.dir(p)
	}
	return nil, fmt.Errorf("union: layer %s: unknown kind %q", l.Path, l.Kind)
}

// upper builds the writable layer and its work directory.
func (b *builder) upper(l image.Layer) (fusefs.Writable, fusefs.Node, error) {
	switch l.Kind {
	case image.LayerExt3:
		fs, err := b.ext3(l, false)
		if err != nil {
			return nil, 0, err
		}
		if err := checkOverlayDirs(fs, true); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", describe(l), err)
		}
		layer, work, err := fusefs.NewExt3Layer(fs, true)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", describe(l), err)
		}
		return layer.Named(describe(l)), work, nil
	case image.LayerDir:
		d, err := b.dir(l.Path)
		return d, 0, err
	case image.LayerDirOverlay:
		return b.dirUpper(l.Path)
	}
	return nil, 0, fmt.Errorf("union: %s cannot be the writable layer", describe(l))
}

// ext3 opens an ext3 section; the FS is closed after unmounting.
func (b *builder) ext3(l image.Layer, ro bool) (*ext3.FS, error) {
	f, err := b.file(l)
	if err != nil {
		return nil, err
	}
	sec := l.Section
	fs, err := ext3.Open(ext3.NewSection(f, sec.Offset, sec.Size), sec.Size,
		ext3.Options{ReadOnly: ro, Logger: b.m.log.With("image", describe(l)),
			// Containers run unprivileged: like the kernel for such
			// writers, none gets the blocks reserved for root.
			NoReserve: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w%s", describe(l), err, fsckHint(l, err))
	}
	b.m.closers = append(b.m.closers, namedCloser{describe(l), fs})
	return fs, nil
}

// dir opens a directory layer.
func (b *builder) dir(path string) (*fusefs.DirLayer, error) {
	d, err := fusefs.OpenDirLayer(path, &fusefs.DirOptions{IDMap: b.ids})
	if err != nil {
		return nil, fmt.Errorf("overlay directory %s: %w", path, err)
	}
	b.m.closers = append(b.m.closers, d)
	return d, nil
}

// dirUpper serves dir/upper as the writable layer with dir/work as its
// work directory, creating both (0755) when missing (COMPAT §3.3).
func (b *builder) dirUpper(dir string) (fusefs.Writable, fusefs.Node, error) {
	d, work, err := fusefs.OpenOverlayDir(dir, &fusefs.DirOptions{IDMap: b.ids})
	if err != nil {
		return nil, 0, fmt.Errorf("setup of overlay upper dir failed: %w", err)
	}
	b.m.closers = append(b.m.closers, d)
	return d, work, nil
}

// tmpfsUpper mounts a tmpfs of size bytes next to target, in the sandbox's
// own mount namespace, and serves it as the upper.
func (b *builder) tmpfsUpper(target string, size int64) (fusefs.Writable, fusefs.Node, error) {
	if b.hosted {
		return b.shmUpper()
	}
	dir, err := os.MkdirTemp(filepath.Dir(target), "writable-tmpfs-")
	if err != nil {
		return nil, 0, fmt.Errorf("union: --writable-tmpfs: %w", err)
	}
	data := fmt.Sprintf("size=%d,mode=0755", size)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		os.Remove(dir)
		return nil, 0, fmt.Errorf("union: --writable-tmpfs: mount tmpfs on %s: %w", dir, err)
	}
	b.m.tmpfs = dir
	return b.dirUpper(dir)
}

// fsckHint says how to repair an overlay found damaged at open: e2fsck
// on a standalone image, which husk will not write to while it is
// damaged; an overlay inside a SIF has to be taken out first.
func fsckHint(l image.Layer, err error) string {
	var ce *ext3.CorruptError
	if !errors.As(err, &ce) && !errors.Is(err, ext3.ErrJournalCorrupt) {
		return ""
	}
	if l.Section.ID != 0 {
		return " (repair it with e2fsck -f once taken out of the SIF)"
	}
	return fmt.Sprintf(" (back it up, then repair it with e2fsck -f %s)", l.Path)
}

func describe(l image.Layer) string {
	if l.Section.ID != 0 {
		return fmt.Sprintf("%s: partition %d", l.Path, l.Section.ID)
	}
	return l.Path
}

// compiles only if mounted is a sandbox.DeviceMaker.
var _ sandbox.DeviceMaker = (*mounted)(nil)

// MknodAt implements sandbox.DeviceMaker: device nodes in --fakeroot
// containers, made in the union without the kernel.
func (m *mounted) MknodAt(parentIno uint64, name string, mode, rdev, uid, gid uint32) error {
	return m.u.MknodAt(parentIno, name, mode, rdev, uid, gid)
}
