// Package image opens the files husk runs and stacks: it detects their type,
// finds the filesystems inside them, locks what it will write, and turns the
// --overlay, --writable and --writable-tmpfs flags into a layer plan.
//
// Detection follows Apptainer (COMPAT §3.1), in its order: a directory
// (sandbox), a SIF, a bare squashfs and a bare ext3 image. Squashfs and ext3
// magic numbers are also accepted right after a legacy " run-singularity"
// launch line. A SIF is read with github.com/sylabs/sif/v2/pkg/sif after its
// header and descriptor table have been checked against the file size, so a
// truncated or hostile file gives an error rather than a huge allocation.
//
// Inside a SIF the root filesystem is the PrimSys partition, which must be
// squashfs. Overlays are FS partitions of type Overlay or Data whose fstype is
// ext3 or squashfs; an Overlay partition outside the PrimSys group is
// ignored. One whose superblock does not check out is left out too, as
// Apptainer does, but listed in Image.BadParts: a plan warns about it, and
// --writable refuses it with the reason when it was the only ext3 overlay.
// --overlay of a SIF that has no overlay partition warns that it adds
// nothing.
//
// Every ext3 section that husk uses is locked with an open-file-description
// byte-range lock over the section: a write lock when it is the writable
// upper, a read lock otherwise (COMPAT §5). Squashfs sections and
// directories are never locked.
//
// The files are opened here, in the host namespace, with the user's own
// permissions; the sandbox receives them as inherited descriptors, listed
// in [Plan.Files] order.
//
// Not supported: ext3 images as the root filesystem, dm-crypt and gocryptfs
// encrypted SIF partitions, OCI-SIF images, image binds (--bind x.img:/dst).
package image
