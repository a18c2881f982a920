// Package overlay implements `husk overlay create`, `resize` and `info`.
//
// Create makes a journaled ext3 image with Apptainer's overlay layout
// (upper/ and work/ at the root), written in Go with ext3.Mkfs, either as a
// bare file of mode 0600 or appended to an existing SIF as an Ext3/Overlay
// partition in the root filesystem's group (COMPAT §2). The image is built
// in <dst>.husk-create-<pid>.ext3, locked by its creator; a create killed
// midway leaves that file and, in a SIF, the start of the partition it was
// appending. The next create removes a staging file nobody holds (info
// does too), refuses to run beside a live one, and truncates a SIF whose
// bytes past its last object begin with an ext3 superblock (or are zeros)
// back to the end of that object.
//
// Resize grows the file system of a bare overlay image, or of a SIF's
// overlay partition when it is the last object in the file (the descriptor
// size, padded size and the header's data size are rewritten in place),
// with ext3.Grow: no e2fsck or resize2fs, and only growing. A size beyond
// what the file system's reserved GDT blocks and 32-bit counts allow, or
// beyond the host's free space for a fully allocated image, is refused
// before the file is touched; any later failure before the growth commits
// truncates the file back to its old size and restores the SIF header and
// descriptor bytes. It takes the
// same write lock as a container using the overlay and refuses images
// attached to a loop device. Info reads an overlay under the read lock and
// reports its geometry, usage, journal state and layout.
//
// Differences from Apptainer: no mkfs.ext3, dd or truncate is run, and
// --fakeroot does not re-execute in a user namespace; it only records
// upper/ and work/ as owned by 0:0, which is what the re-execution achieves.
// The --tmpdir flag has no use because nothing is staged on disk. Apptainer
// has no overlay resize or info commands.
package overlay
