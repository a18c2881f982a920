// Package ext3 reads and writes ext2 and ext3 file system images in
// process: the persistent overlay images Apptainer creates with
// `mkfs.ext3 -d`, bare or inside a SIF. It also formats new ones (Mkfs).
//
// # Supported
//
//   - ext2 and ext3 as mkfs.ext3 makes them: 1, 2 and 4 KiB blocks, 128- and
//     256-byte inodes, features has_journal, ext_attr, resize_inode,
//     dir_index, filetype, sparse_super and large_file.
//   - Regular files through block maps (direct, single, double and triple
//     indirect blocks), sparse files (holes are never allocated), files past
//     4 GiB (i_size_high), truncate, fallocate (allocate, punch, zero).
//   - Directories: linear, and hashed (htree) as the kernel writes them,
//     with the legacy, half-MD4 and TEA hashes in their signed and unsigned
//     variants. The index is kept as the kernel keeps it: an insert goes
//     into the leaf the index designates, a full leaf is split by hash, a
//     full index node is split and a full root grows a level
//     (htree_insert.go). Only where the kernel would need largedir, or a
//     leaf holds nothing but one hash, is the index flag cleared instead,
//     which is legal (index blocks read as empty entries). husk does not
//     index directories it makes itself; those, and all directories of 8
//     blocks or more, get an in-memory name index, so lookups in a
//     100,000-entry directory cost a map access.
//   - Fast and slow symlinks, character and block devices (old and new
//     device number encodings), fifos, sockets, hard links, rename with
//     RENAME_NOREPLACE and RENAME_EXCHANGE.
//   - Extended attributes in the inode body and in a shared external block
//     (reference counted, with the ext2 entry and block hashes), namespaces
//     user., trusted., security., system., and POSIX ACLs converted between
//     the xattr and the ext4 on-disk encoding.
//   - Unlink of open files: the inode is kept on the orphan list until
//     Release (or Close), and a crash leaves it for the next Open to free.
//   - ENOSPC and inode exhaustion leave the image consistent; reserved
//     blocks are kept for files owned by root.
//   - The journal (JBD2, see journal.go): replayed on Open when needed,
//     and every metadata change is committed through it in ordered mode.
//   - Damaged images are not written to before validation: Open checks the
//     superblock, group descriptors and journal superblock before a replay
//     and the root inode after it, and writes the "mounted" superblock
//     fields (needs_recovery, mount count) only before the first change,
//     so an image that is only read, or that the caller refuses, stays
//     byte for byte the same. A writable Open of an image a crash left
//     marked in use is closed clean (needs_recovery cleared) even if
//     nothing changed, as after a replay. A group whose bitmaps mark its own metadata,
//     the journal or a reserved inode free is refused for allocation
//     (CorruptError, EIO: run e2fsck) instead of handing those out.
//   - Offline growth (Grow, resize.go): a partial last group is filled,
//     new groups are added, and reserved GDT blocks are taken into use
//     through the resize inode; the old file system's changed blocks go
//     through the journal in one transaction, so an interrupted growth
//     leaves the old or the new file system. dumpe2fs after Grow matches
//     resize2fs. Describe (info.go) reports an image without opening it
//     for writing.
//
// # Not supported
//
// ext4 features are refused by name, e.g. "ext3: uses ext4 feature
// extents, which husk does not support": extents, flex_bg, 64bit,
// huge_file, dir_nlink, extra_isize, metadata_csum, uninit_bg, meta_bg,
// inline_data, ... An inode that carries such a feature's flag (extents,
// inline_data, huge_file, ea_inode) on a file system without the feature
// is damaged, not ext4, and is reported as corrupt. Also: external
// journals, building an htree index for a directory that has none,
// following htree collision chains on lookup (a linear scan is used
// instead), quota, and data journalling.
//
// # Concurrency and durability
//
// All methods may be called from many goroutines. Each inode has its own
// read-write lock, each block group its own allocator lock, and there is
// no global lock on the data path. File data goes straight to the device,
// and the write-out of every 8 MiB of contiguous data is started at once
// (sync_file_range), so fsync after a large write waits only for the
// tail. Metadata lives in a block cache with a byte budget
// (Options.CacheBytes, which also bounds the in-memory inodes). Changed
// metadata blocks form the running transaction. A commit (on Sync, Fsync,
// every Options.CommitInterval, after Options.IdleCommit without a
// change, when the transaction passes
// Options.TransactionBytes or a quarter of the journal, and on Close)
// briefly takes the operation lock
// exclusively to copy the dirty blocks, syncs the data, then writes the
// copies through the journal without holding any lock. Blocks freed by a
// transaction are reused only after it commits, so new data never lands
// in a block the last committed metadata still points at.
//
// # Usage
//
//	f, err := ext3.Open(ext3.NewSection(file, off, size), size, ext3.Options{})
//	if err != nil { ... }
//	defer f.Close()
//	a, err := f.Create(ext3.RootIno, "hello", 0o644, uid, gid)
//	_, err = f.WriteAt(a.Ino, []byte("hi\n"), 0)
//
// Errors for POSIX conditions are syscall.Errno values (ENOENT, EEXIST,
// ENOSPC, ...). Damaged images give a *CorruptError naming the structure,
// block and inode.
//
// # On-disk format
//
// All on-disk integers are little endian, except the JBD2 journal, which
// is big endian. Struct and field names follow the kernel's
// Documentation/filesystems/ext4/ and e2fsprogs' lib/ext2fs/ext2_fs.h
// ("Lo"/"Hi" for split fields). Block numbers are file system blocks
// unless named "lblk" (logical block within a file).
package ext3
