// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

// Package squash reads squashfs 4.0 filesystems, such as the root
// filesystem partition of a SIF image, directly through an io.ReaderAt.
//
// # Use
//
//	sec := io.NewSectionReader(file, partOffset, partSize)
//	fsys, err := squash.Open(sec, partSize, nil)
//	root, _ := fsys.Inode(fsys.Root())
//	bin, err := fsys.Lookup(root, "bin")
//	entries, err := fsys.ReadDir(bin)
//
// Inodes are addressed by [Ref], the on-disk inode reference, which is what
// directory entries carry; nothing is path-based. All methods are safe for
// concurrent use by many goroutines: caches are sharded with one mutex per
// shard, and concurrent misses on one block decompress it once.
//
// # Supported
//
//   - Every inode type in basic and extended form: directories, regular
//     files, symlinks, block and character devices, fifos, sockets. Modes
//     keep setuid, setgid and sticky bits; devices keep their dev_t.
//   - Hard links (nlink from extended inodes), uid/gid through the id table,
//     extended attributes with their namespace prefix (user., trusted.,
//     security.), including out-of-line values.
//   - Fragments, sparse blocks, uncompressed blocks and tables.
//   - Compressors gzip, xz, lzma, lzo (in-house LZO1X decoder), lz4 and
//     zstd; compressor options in the image are read and ignored.
//   - Directory index: a lookup in a directory with an index parses (and
//     caches) only the index and the one range of the listing that can
//     hold the name, so a 100,000-entry directory costs one metadata
//     block per range used; small directories get a cached, sorted name
//     table.
//
// # Not supported
//
//   - Squashfs versions other than 4.0, and writing.
//   - Resolving "." and ".." by name, and the NFS export table (inode
//     number to reference); callers track parents themselves.
//   - xz images built with a BCJ filter (mksquashfs -Xbcj): the xz library
//     refuses the filter and the error names it.
//   - xattr namespaces other than user, trusted and security.
//   - Directory listings whose names are not strictly sorted: every known
//     writer sorts them (the directory index relies on it), and the
//     reader refuses such listings as corrupt.
//
// # Known pitfalls
//
//   - A corrupt image can make a directory entry point at an ancestor.
//     Each call stays bounded, but a caller walking the tree recursively
//     must track visited inode references itself.
//   - Inode numbers start at 1 and the root is usually the highest one;
//     FUSE servers that reserve inode 1 must remap.
//
// # Caches and memory
//
// Every cache is a sharded LRU with a cost budget (one mutex per shard, no
// lock shared by all readers), and concurrent misses on one key load it
// once: 64 readers of one cold block decompress it once. The budgets come
// from [Options.MemoryBytes] (default 32 MiB): half for decompressed data
// and fragment blocks, a quarter for metadata blocks, an eighth each for
// parsed inodes and for directory tables (whole small listings, directory
// indexes, index ranges; the last listing too large for that budget's
// shards, up to four times the budget, is kept aside so a 100,000-entry
// directory is not parsed again for every listing). Data blocks a
// sequential reader has finished
// are evicted first, since the kernel's page cache keeps what was read.
// Memory does not grow with the image: Open reads only the superblock,
// the id table and the fragment and xattr lookup arrays.
//
// Sequential reads of a file decode the next [Options.Readahead] blocks
// in the background (at most GOMAXPROCS decodes at once), through the
// same in-flight tracking, so a reader never decodes a block twice; a
// first read of a whole block from offset 0 counts as sequential. A file
// of up to 8 MiB read out of order (the page faults of a mapped program
// or library) is decoded whole by one background goroutine. [FS.StoredExtent]
// tells where stored data lies in the image, for callers that copy it
// themselves (splice).
// Compressed input is read with ReadAt (pread on an *os.File: no shared
// file offset) into pooled buffers; gzip decoders are pooled, zstd uses
// one concurrent decoder with a window capped at the block size. Stored
// (uncompressed) data blocks are read straight into the caller's buffer.
//
// xz and lzma blocks are decoded by github.com/ulikunitz/xz, which cannot
// reuse a decoder and runs at a few MB/s: images meant to be read fast
// should use gzip, zstd or lz4.

// # Robustness
//
// Every offset and length read from the image is checked against the
// image size before use, loops over on-disk structures consume input on
// every step, and allocations are bounded by the image size, so a corrupt
// image gives a [*FormatError] rather than a panic, a hang or a huge
// allocation.
//
// # Format reference
//
// The layout follows the kernel's fs/squashfs/squashfs_fs.h and the
// squashfs-tools documentation (squashfs-tools/README-4.x and Phillip
// Lougher's format description). All multi-byte fields are little-endian.
// Type names in comments (squashfs_dir_header, ...) are the kernel's struct
// names. "Section offset" means a byte offset from the start of the
// squashfs image, which is where all table starts in the superblock point.
package squash
