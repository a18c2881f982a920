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
//   - Directory index: lookups in large directories scan one index range;
//     directories that are looked up repeatedly or listed get a cached,
//     sorted name table.
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
// # Caches
//
// Decompressed data and fragment blocks share one byte-budgeted LRU
// ([Options.CacheBytes]); metadata blocks have another
// ([Options.MetaCacheBytes]). Parsed inodes and directory listings are
// cached with fixed cost-estimated budgets.
//
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
