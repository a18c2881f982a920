// Package union is the glue between husk's CLI and its filesystems: the
// [sandbox.Mounter] that, in the sandbox's stage 1 (root of a new user
// namespace, in a new mount namespace), turns the layer plan made by
// package image into a mounted fusefs union.
//
// Layers are built from the image files the CLI opened and locked on the
// host, inherited as descriptors in plan order: squashfs sections are read
// in place through an io.SectionReader, ext3 sections through
// ext3.NewSection, and directories are served by fusefs directory layers.
// --writable-tmpfs gets a directory upper on a size-limited tmpfs mounted
// in the sandbox's mount namespace.
//
// Owners: stage 1's root is the user on the host, and the payload's
// requests arrive as that root. The union's IDMap therefore maps server
// id 0 to the user's uid (or to 0 under --fakeroot), so files the user
// creates are stored in ext3 images with the user's uid, as fuse2fs under
// Apptainer stores them. The image's root-owned files are shown as the
// user's, as Apptainer's squashfuse -o uid=,gid= shows them; see idMap.
//
// An ext3 overlay is validated before anything is written to it:
// ext3.Open checks the superblock, descriptors, journal and root inode and
// marks the image in use only at its first change, and checkOverlayDirs
// reads upper/ and work/ (directories, or missing: then created, as
// Apptainer does) before fusefs.NewExt3Layer may create them. A refused
// image is left unchanged.
//
// A layer error (a corrupt block, a failed read of an image file) reaches
// the kernel as EIO and the user as one warning naming the image; it is
// also handed to sandbox.ReportImageFault, so that a container setup that
// fails on it says which image is damaged and how (sandbox.ImageError).
//
// Once the union is mounted, the programs the payload starts first
// (sandbox.Spec.Programs) and the libraries they load are read ahead
// through it while the rest of the container is set up (warm.go); Unmount
// stops that first.
//
// On Unmount the union is unmounted and synced, then every layer is closed
// in order, which checkpoints the ext3 journals so that e2fsck -fn finds
// the images clean.
package union
