package overlay

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"

	"github.com/sylabs/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/ext3"
)

// MinSizeMiB is the smallest overlay Apptainer accepts.
const MinSizeMiB = 64

// MaxSizeMiB is the largest ext3 file system, 2^32 - 1 blocks of 4 KiB,
// in whole MiB.
//
// TODO: mkfs keeps every group's bitmaps in memory and takes about a
// minute and 200-600 MB for 1-4 TiB; stream them instead.
const MaxSizeMiB = (1<<32 - 1) * 4096 >> 20

// Options are the flags of `husk overlay create`.
type Options struct {
	SizeMiB    int64
	Sparse     bool
	CreateDirs []string
	// Fakeroot records upper/ and work/ (and CreateDirs) as owned by 0:0.
	Fakeroot bool
	// UID and GID own the directories otherwise.
	UID, GID uint32
}

// Create makes the overlay at dst: a new bare ext3 file, or a partition
// appended to the SIF at dst when dst is a SIF the user can write.
func Create(dst string, opts Options) error {
	if opts.SizeMiB < MinSizeMiB {
		return fmt.Errorf("image size must be equal or greater than %d MiB", MinSizeMiB)
	}
	if opts.SizeMiB > MaxSizeMiB {
		return fmt.Errorf("image size must be at most %d MiB (16 TiB, the most ext3 can "+
			"address)", MaxSizeMiB)
	}
	dirs, err := layout(opts)
	if err != nil {
		return err
	}

	// An existing file the user may write is a SIF to add to or an error.
	// Apptainer counts one the user cannot write as absent and renames a
	// fresh overlay over it; husk refuses, since that destroys a file the
	// user protected (a read-only SIF or overlay full of data).
	var target *os.File
	var info *image.SIFInfo
	if dst == "" {
		return errors.New("no image path given")
	}
	// A dangling symlink counts as absent, as in Apptainer: the new
	// overlay is renamed over the link.
	if fi, err := os.Stat(dst); err == nil {
		if !fi.Mode().IsRegular() {
			// Opening a FIFO to look for a SIF would wait for a writer.
			return fmt.Errorf("%s exists and is not a regular file", dst)
		}
		if unix.Access(dst, unix.W_OK) != nil {
			return fmt.Errorf("%s exists and is not writable by you: "+
				"husk overlay create will not replace it", dst)
		}
		target, info, err = openExisting(dst)
		if err != nil {
			return err
		}
		defer target.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	// What a create killed earlier left: its staging file, and in a SIF
	// the start of the partition it was appending.
	live, _, err := sweepTemps(dst)
	if err != nil {
		return fmt.Errorf("looking for leftovers of an earlier create next to %s: %w", dst, err)
	}
	if live != 0 {
		return sweepErr(dst, live)
	}
	if target != nil {
		if _, err := trimInterrupted(target); err != nil {
			return fmt.Errorf("%s: removing the bytes an interrupted create appended: %w",
				dst, err)
		}
	}

	// Apptainer stages in <image>.ext3; a name with the pid, locked while
	// in use, keeps two creators of the same image apart and lets the next
	// one remove what a killed one left.
	tmp, err := createTemp(dst)
	if err != nil {
		return fmt.Errorf("creating the overlay next to %s: %w", dst, err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath)
	defer tmp.Close()
	defer removeOnSignal(tmpPath)()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	size := opts.SizeMiB << 20
	if err := allocate(tmp, size, opts.Sparse); err != nil {
		return fmt.Errorf("allocating %s: %w", tmpPath, err)
	}
	if err := ext3.Mkfs(ext3.NewSection(tmp, 0, size), size, mkfsOptions(dirs)); err != nil {
		return fmt.Errorf("while creating ext3 partition in %s: %w", tmpPath, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}

	if target == nil {
		if err := os.Rename(tmpPath, dst); err != nil {
			return fmt.Errorf("moving overlay into place: %w", err)
		}
		return nil
	}
	return addToSIF(target, dst, tmp, info)
}

// openExisting opens dst for an overlay to be appended and checks, in
// Apptainer's order, that it is a SIF that may take one.
func openExisting(dst string) (*os.File, *image.SIFInfo, error) {
	if !isSIF(dst) {
		img, err := image.Open(dst, false)
		if err == nil {
			img.Close()
		}
		if err == nil && img.Kind == image.KindExt3 {
			return nil, nil, fmt.Errorf("EXT3 overlay image %s already exists", dst)
		}
		return nil, nil, fmt.Errorf("destination image must be SIF image")
	}

	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", dst, err)
	}
	info, err := image.InspectSIF(f, dst)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	switch {
	case info.ManyPrimaries != "":
		// The overlay's group would be a guess, and run refuses the image.
		err = fmt.Errorf("%s: corrupt SIF: %s are all primary system partitions", dst,
			info.ManyPrimaries)
	case info.Encrypted:
		err = fmt.Errorf("encrypted root FS partition in %s: could not add writable overlay",
			dst)
	case info.Signed:
		err = fmt.Errorf("SIF image %s is signed: could not add writable overlay", dst)
	case info.Ext3Overlay != 0:
		err = fmt.Errorf("a writable overlay partition already exists in %s (ID: %d), delete "+
			"it first with \"husk sif del %d %s\"", dst, info.Ext3Overlay,
			info.Ext3Overlay, dst)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// isSIF says whether the file at p has SIF_MAGIC where a SIF has it.
func isSIF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 41)
	_, err = io.ReadFull(f, b)
	return err == nil && string(b[32:41]) == "SIF_MAGIC"
}

// addToSIF appends the ext3 file to the SIF as Ext3/Overlay in the root
// filesystem's group, with the header arch (COMPAT §2.3).
func addToSIF(f *os.File, dst string, ext *os.File, info *image.SIFInfo) error {
	arch := info.Arch
	if arch == "" || arch == "unknown" {
		arch = runtime.GOARCH
	}
	if _, err := ext.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var src io.Reader = ext
	if copyHook != nil {
		src = &hookReader{r: ext}
	}
	di, err := sif.NewDescriptorInput(sif.DataPartition, src,
		sif.OptPartitionMetadata(sif.FsExt3, sif.PartOverlay, arch),
		sif.OptGroupID(info.Group))
	if err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	fi, err := sif.LoadContainer(f, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	// The partition goes where a deleted one may lie that a running
	// container still uses; f's lock lasts until the caller closes it.
	if err := image.LockBytes(f, dst, image.SIFDataEnd(fi), 0); err != nil {
		fi.UnloadContainer()
		return err
	}
	if err := fi.AddObject(di); err != nil {
		fi.UnloadContainer()
		return fmt.Errorf("while adding overlay partition to %s: %w", dst, err)
	}
	if err := fi.UnloadContainer(); err != nil {
		return err
	}
	return f.Sync()
}

// copyHook, when set by a test, is called with the bytes of the overlay
// copied into the SIF so far, to kill the create in the middle.
var copyHook func(copied int64)

type hookReader struct {
	r io.Reader
	n int64
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	copyHook(h.n)
	return n, err
}

// allocate sizes the file: a hole with sparse, otherwise real blocks
// (fallocate, or zeros where the filesystem cannot), like dd from
// /dev/zero.
func allocate(f *os.File, size int64, sparse bool) error {
	if sparse {
		return f.Truncate(size)
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return err
		}
	}
	return nil
}

// layout returns the directories of the image: upper, work and each
// --create-dir under upper with its parents, with Apptainer's modes.
func layout(opts Options) ([]ext3.MkfsDir, error) {
	uid, gid := opts.UID, opts.GID
	if opts.Fakeroot {
		uid, gid = 0, 0
	}
	// The staging directory Apptainer hands to mkfs is made with umask 0:
	// 0755, or 0777 when an id does not fit in 16 bits.
	mode := uint32(0o755)
	if opts.UID > 65535 || opts.GID > 65535 {
		mode = 0o777
	}
	dirs := []ext3.MkfsDir{
		{Path: "upper", Mode: mode, Uid: uid, Gid: gid},
		{Path: "work", Mode: mode, Uid: uid, Gid: gid},
	}
	seen := map[string]bool{"upper": true}
	for _, cd := range opts.CreateDirs {
		if cd == "" {
			continue
		}
		p := path.Join("upper", cd)
		if p != "upper" && !strings.HasPrefix(p, "upper/") {
			return nil, fmt.Errorf("overlay directory created outside of overlay layout /upper")
		}
		var parts []string
		for q := p; q != "upper"; q = path.Dir(q) {
			parts = append([]string{q}, parts...)
		}
		for _, q := range parts {
			if !seen[q] {
				seen[q] = true
				dirs = append(dirs, ext3.MkfsDir{Path: q, Mode: mode, Uid: uid, Gid: gid})
			}
		}
	}
	return dirs, nil
}

// mkfsOptions leaves geometry to ext3.Mkfs, whose zero values are what
// Apptainer's `mkfs.ext3 -d` gets from Debian's mke2fs.conf: 1 KiB blocks
// and an inode per 4 KiB under 512 MiB, 4 KiB blocks and an inode per
// 16 KiB above, 256-byte inodes.
func mkfsOptions(dirs []ext3.MkfsDir) ext3.MkfsOptions {
	return ext3.MkfsOptions{Dirs: dirs}
}
