// Package fusefs serves the union of container image layers through FUSE
// (go-fuse v2, package fs), with the semantics of the kernel's overlayfs
// (Documentation/filesystems/overlayfs.rst) and an on-disk upper format
// that the kernel, fuse-overlayfs and Apptainer read back.
//
// A [Union] stacks read-only [Layer]s (top first) under at most one
// [Writable] upper. Layers provided here: [DirLayer] (a host directory,
// read-only or writable), [MemLayer] (the skeleton of mount points,
// Apptainer's overlay-lowerdir), and adapters for husk's squashfs and
// ext3 readers.
//
// Supported:
//   - merged directories down to the first opaque one; whiteouts and opaque
//     markers in every dialect of COMPAT §4.4 when reading; char 0/0
//     whiteouts and trusted+user (or fuse-overlayfs style user + ".wh..wh..opq")
//     opaque markers when writing; a directory husk makes opaque holds no
//     whiteouts (the kernel reads an opaque directory as it is and would
//     show them as broken entries);
//   - copy-up of data (sparse), mode, owner, times and xattrs, atomic through
//     the work directory; a hard-linked lower file is copied once and all
//     its visible names are linked to the copy (the lower is indexed by
//     one walk on the first such copy-up);
//   - rename of anything, including lower directories (copied up whole, not
//     EXDEV), with RENAME_NOREPLACE and RENAME_EXCHANGE;
//   - stable inode numbers: the layer index+1 in the top 16 bits and the
//     layer's own number below, kept by a node across copy-up, and equal
//     in readdir (d_ino) and stat (st_ino); a skeleton directory that
//     covers an image directory takes the image's number, so mount points
//     added under cached directories do not change them;
//   - paths of any length in a [DirLayer] (opened a name at a time from
//     cached parent descriptors, never a whole path beyond PATH_MAX);
//   - uid/gid translation between the container's and the FUSE server's
//     views ([IDMap]);
//   - O_TMPFILE (assembled in the work directory), fallocate, SEEK_DATA
//     and SEEK_HOLE (where the layer can find holes), fsync of files and
//     directories.
//
// Not supported:
//   - overlayfs redirect_dir, metacopy, index and origin xattrs (not read,
//     not written), so inode numbers are stable for the life of a mount,
//     not across mounts;
//   - xattrs in namespaces the upper refuses (trusted.*, security.* for an
//     unprivileged upper) are dropped on copy-up, with a warning;
//   - POSIX and flock locks are left to the kernel (local to this host);
//   - access(2) checks are left to the kernel (default_permissions);
//   - changes made to the layers behind the union's back are not seen
//     until the kernel's caches expire (an hour by default);
//   - fstat of a directory that was removed while open fails (ENOENT), as
//     with go-fuse's loopback (go-fuse issue 55): a DirLayer reaches
//     directories by name.
//
// Use:
//
//	lower, _ := fusefs.OpenDirLayer("/img", nil)
//	upper, work, _ := fusefs.OpenOverlayDir("/ovl", nil) // /ovl/upper, /ovl/work
//	u, _ := fusefs.New(fusefs.Options{Upper: upper, WorkDir: work, Lowers: []fusefs.Layer{lower}})
//	_ = u.Mount("/mnt")
//	defer u.Unmount()
//
// Known pitfalls: the process serving the union must not touch memory
// mapped from the union (a page fault there cannot stop for the garbage
// collector while the collector waits for it: deadlock); it may use the
// mount through system calls. DirLayer
// reaches xattrs through /proc/self/fd, so /proc must be mounted in the
// serving process's mount namespace.
//
// Locking (locking.go): no union-wide lock. Each directory has a
// read-write lock for its names (creates, removes, renames and copy-ups
// landing in it write; lookups and listings read); a rename between two
// directories takes both under one rename lock, ancestor first; a copy-up
// copies the data into the work directory holding only the node's own
// lock, and locks the parent just to rename the copy into place. Data
// transfer and attribute reads take no union lock.
//
// Kernel caching: entries, attributes and negative entries live an hour
// (the union is the only writer, and its changes go through the kernel or
// are announced with NotifyEntry); lower-only files keep their page cache
// across opens (FOPEN_KEEP_CACHE); files of a union without an upper open
// without a round trip (OPEN answers ENOSYS, see openless.go); so do
// directories of any union (OPENDIR, see opendir.go), and the kernel keeps every
// listing until the directory changes through it; symlink targets are
// cached; FLUSH is refused once so that closes cost no round trip; a file
// made write-only bypasses the page cache (FOPEN_DIRECT_IO: one WRITE per
// write(2) and no security.capability lookup before each, see
// createOpenFlags), and the server clears set-id bits when the kernel
// asks (FUSE_WRITE_KILL_SUIDGID, rawfs.go). Data a
// squashfs image stores uncompressed is spliced from the image file
// ([SquashLayer.Backed]), and a sequential reader of an image file has
// the kernel read ahead of it in requests sent together (readahead.go),
// beyond the 128 KiB it reads ahead of a FUSE file by itself. READDIRPLUS
// replies carry attributes for
// subdirectories only: a tree walk needs those, and every name handed to
// the kernel costs a kernel inode and a union node (about 200 bytes of
// heap, plus go-fuse's table entries) until the kernel forgets it.
//
// Errors: layers report POSIX conditions as syscall.Errno; anything else
// becomes EIO for the kernel and one warning, which names the image when
// the layer was given a name ([SquashLayer.Named], [Ext3Layer.Named],
// [LayerError]).
package fusefs
