package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/ext3"
)

// ParseSizeMiB reads a size in MiB: a number, or one with an M, G or T
// suffix (MiB, GiB, TiB; "M", "MB", "MiB" all mean MiB).
func ParseSizeMiB(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mul := int64(1)
	switch {
	case strings.HasSuffix(t, "M"):
		t = t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		t, mul = t[:len(t)-1], 1024
	case strings.HasSuffix(t, "T"):
		t, mul = t[:len(t)-1], 1024*1024
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<43)/mul {
		return 0, fmt.Errorf("invalid size %q: want a positive number of MiB, or one "+
			"with an M or G suffix (e.g. 2048 or 2G)", s)
	}
	return n * mul, nil
}

// growFS is ext3.Grow; tests replace it to fail after the file was extended.
var growFS = ext3.Grow

// ResizeResult reports a growth.
type ResizeResult struct {
	OldSize, NewSize int64 // file system bytes before, partition or file bytes after
	// Trimmed says the file system already had the size asked for, and
	// only the file, left larger by an interrupted resize, was cut to it.
	Trimmed bool
	ext3.GrowResult
}

// Resize grows the ext3 overlay at path, a bare image or the overlay
// partition of a SIF, to sizeMiB MiB. Only growth is possible. In a SIF the
// partition must be the last object in the file, so that it can grow in
// place. The image is locked for writing like `husk exec --overlay` does;
// an image attached to a loop device, or marked in use by a mount or a
// crash, is refused unless force is set (then only the in-use mark is
// ignored).
func Resize(path string, sizeMiB int64, force bool, log *slog.Logger) (*ResizeResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	img, sec, err := openOverlay(path, true)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if err := image.Lock(img, sec, true, log); err != nil {
		return nil, err
	}
	if dev := loopDevice(img.Path); dev != "" {
		return nil, fmt.Errorf("%s is attached to %s (mounted by the kernel?): detach it first",
			img.Path, dev)
	}
	newSize := sizeMiB << 20
	if img.Kind == image.KindExt3 {
		newSize -= sec.Offset // a launch line before the file system stays
	}
	// The same size as the file goes on to Grow, which says whether the
	// file system already fills it: a resize killed after extending the
	// file left a larger file around the old file system, and running
	// it again must finish the job. What cannot shrink is the file
	// system, so that is what a new size is compared with.
	sum, err := ext3.Describe(ext3.NewSection(img.File, sec.Offset, sec.Size), sec.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.Path, err)
	}
	fsSize := int64(sum.Blocks) * int64(sum.BlockSize)
	switch {
	case newSize < fsSize:
		return nil, fmt.Errorf("%s: shrinking the overlay from %d MiB to %d MiB is not "+
			"supported: only growing", img.Path, fsSize>>20, sizeMiB)
	case newSize < sec.Size && img.Kind == image.KindSIF:
		return nil, fmt.Errorf("%s: the overlay partition is %d MiB and its file system "+
			"%d MiB (a resize interrupted?): give %d MiB or more to finish growing it",
			img.Path, sec.Size>>20, fsSize>>20, sec.Size>>20)
	}
	if sum.InUse && !sum.NeedsRecovery && !force {
		return nil, fmt.Errorf("%s: the overlay is marked in use: mounted somewhere, or not "+
			"closed after a crash; if nothing uses it, run 'e2fsck -f' on it or pass --force",
			img.Path)
	}

	if newSize == fsSize && newSize < sec.Size {
		// An interrupted resize left the file larger than its file
		// system, and this size is the file system's: give the rest of
		// the file back (a bare image; a SIF was refused above).
		if err := img.File.Truncate(sec.Offset + newSize); err != nil {
			return nil, fmt.Errorf("truncating %s: %w", img.Path, err)
		}
		return &ResizeResult{OldSize: fsSize, NewSize: newSize, Trimmed: true}, nil
	}

	var slot int64 = -1
	if img.Kind == image.KindSIF {
		if slot, err = lastObjectSlot(img, sec); err != nil {
			return nil, err
		}
	}
	if err := checkGrowLimit(sum, newSize); err != nil {
		return nil, fmt.Errorf("%s: %w", img.Path, err)
	}
	st, err := img.File.Stat()
	if err != nil {
		return nil, err
	}
	oldFileSize := st.Size()
	end := sec.Offset + newSize
	if end > oldFileSize {
		if err := checkHostRoom(img.File, st, end); err != nil {
			return nil, fmt.Errorf("%s: %w", img.Path, err)
		}
	}

	// From here on, any failure that leaves the old file system in place
	// gives the file back its old size and the SIF its old descriptor, so
	// a failed resize never keeps host space.
	var saved *sifState
	if slot >= 0 {
		if saved, err = saveSIFState(img.File, slot); err != nil {
			return nil, fmt.Errorf("%s: %w", img.Path, err)
		}
	}
	rollback := func() {
		if saved != nil {
			if err := saved.restore(img.File); err != nil {
				log.Warn(fmt.Sprintf("%s: restoring the SIF header and overlay "+
					"descriptor: %v", img.Path, err))
			}
		}
		if err := img.File.Truncate(oldFileSize); err != nil {
			log.Warn(fmt.Sprintf("%s: truncating back to %d bytes: %v", img.Path,
				oldFileSize, err))
		}
	}
	if end > oldFileSize {
		if err := extend(img.File, st, end); err != nil {
			rollback()
			return nil, fmt.Errorf("extending %s to %d bytes: %w", img.Path, end, err)
		}
	}
	if slot >= 0 {
		// The descriptor first: a crash before the file system grows
		// leaves a partition larger than its file system, which is valid.
		if err := setPartitionSize(img.File, slot, newSize-sec.Size); err != nil {
			rollback()
			return nil, fmt.Errorf("%s: %w", img.Path, err)
		}
	}
	res, err := growFS(ext3.NewSection(img.File, sec.Offset, newSize), newSize,
		ext3.Options{Logger: log})
	if err != nil {
		// Once Grow has begun to commit, the image may hold the new file
		// system: it must keep its new size.
		if !errors.Is(err, ext3.ErrGrowIncomplete) {
			rollback()
		}
		if errors.Is(err, ext3.ErrNotGrown) && newSize == sec.Size {
			return nil, fmt.Errorf("%s: the overlay is already %d MiB", img.Path, sizeMiB)
		}
		return nil, fmt.Errorf("%s: %w", img.Path, err)
	}
	if end < oldFileSize {
		// A file an interrupted resize left larger than asked for now:
		// the space past the grown file system belongs to nothing.
		if err := img.File.Truncate(end); err != nil {
			return nil, fmt.Errorf("truncating %s to %d bytes: %w", img.Path, end, err)
		}
	}
	if err := img.File.Sync(); err != nil {
		return nil, err
	}
	return &ResizeResult{OldSize: fsSize, NewSize: newSize, GrowResult: *res}, nil
}

// openOverlay opens path and returns its ext3 overlay section: the whole
// of a bare ext3 image, or a SIF's ext3 overlay partition.
func openOverlay(path string, write bool) (*image.Image, image.Section, error) {
	img, err := image.Open(path, write)
	if err != nil {
		return nil, image.Section{}, err
	}
	fail := func(format string, args ...any) (*image.Image, image.Section, error) {
		img.Close()
		return nil, image.Section{}, fmt.Errorf(format, args...)
	}
	if write && !img.Writable {
		return fail("%s is not writable by the current user", img.Path)
	}
	switch img.Kind {
	case image.KindExt3:
		return img, *img.Root, nil
	case image.KindSIF:
		for _, s := range img.Overlays {
			if s.Overlay && s.FS == image.FSExt3 {
				return img, s, nil
			}
		}
		if err := img.BadExt3Overlay(); err != nil {
			return fail("%w", err)
		}
		return fail("%s: the SIF has no ext3 overlay partition (add one with "+
			"'husk overlay create %s')", img.Path, filepath.Base(img.Path))
	}
	return fail("%s is a %s image, not an ext3 overlay image or a SIF with one",
		img.Path, img.Kind)
}

// SIF layout (sif/v2 header and rawDescriptor, little endian).
const (
	sifHdrModified  = 72
	sifHdrDescrOff  = 96
	sifHdrDescrN    = 88
	sifHdrDataSize  = 120
	sifDescrLen     = 585
	sifDescUsed     = 4
	sifDescID       = 5
	sifDescOffset   = 17
	sifDescSize     = 25
	sifDescPadded   = 33
	sifDescModified = 49
)

// lastObjectSlot checks that sec is the object ending last in the SIF and
// returns its descriptor slot.
func lastObjectSlot(img *image.Image, sec image.Section) (int64, error) {
	fi, err := sif.LoadContainer(img.File, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return 0, fmt.Errorf("%s: invalid SIF: %w", img.Path, err)
	}
	defer fi.UnloadContainer()
	all, err := fi.GetDescriptors(func(sif.Descriptor) (bool, error) { return true, nil })
	if err != nil {
		return 0, fmt.Errorf("%s: %w", img.Path, err)
	}
	for _, d := range all {
		if d.ID() != sec.ID && d.Offset()+d.Size() > sec.Offset {
			return 0, fmt.Errorf("%s: the overlay partition (ID %d) cannot grow in place: "+
				"object %d (%s) lies after it in the file; only an overlay that is the "+
				"last object of the SIF can be resized", img.Path, sec.ID, d.ID(), d.DataType())
		}
	}
	h := make([]byte, 128)
	if _, err := img.File.ReadAt(h, 0); err != nil {
		return 0, err
	}
	off := int64(binary.LittleEndian.Uint64(h[sifHdrDescrOff:]))
	n := int64(binary.LittleEndian.Uint64(h[sifHdrDescrN:]))
	d := make([]byte, sifDescrLen)
	for i := int64(0); i < n; i++ {
		if _, err := img.File.ReadAt(d, off+i*sifDescrLen); err != nil {
			return 0, fmt.Errorf("%s: descriptor %d: %w", img.Path, i, err)
		}
		if d[sifDescUsed] != 0 && binary.LittleEndian.Uint32(d[sifDescID:]) == sec.ID {
			if o := int64(binary.LittleEndian.Uint64(d[sifDescOffset:])); o != sec.Offset {
				return 0, fmt.Errorf("%s: descriptor %d has offset %d, want %d", img.Path,
					sec.ID, o, sec.Offset)
			}
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s: no descriptor slot for partition %d", img.Path, sec.ID)
}

// setPartitionSize adds delta bytes to the size and padded size of the
// descriptor in slot and to the header's data size, and stamps both
// modification times, as the sif library does when it writes an object.
func setPartitionSize(f *os.File, slot, delta int64) error {
	le := binary.LittleEndian
	h := make([]byte, 128)
	if _, err := f.ReadAt(h, 0); err != nil {
		return err
	}
	off := int64(le.Uint64(h[sifHdrDescrOff:])) + slot*sifDescrLen
	d := make([]byte, sifDescrLen)
	if _, err := f.ReadAt(d, off); err != nil {
		return err
	}
	now := uint64(time.Now().Unix())
	le.PutUint64(d[sifDescSize:], le.Uint64(d[sifDescSize:])+uint64(delta))
	le.PutUint64(d[sifDescPadded:], le.Uint64(d[sifDescPadded:])+uint64(delta))
	le.PutUint64(d[sifDescModified:], now)
	le.PutUint64(h[sifHdrDataSize:], le.Uint64(h[sifHdrDataSize:])+uint64(delta))
	le.PutUint64(h[sifHdrModified:], now)
	if _, err := f.WriteAt(d, off); err != nil {
		return fmt.Errorf("writing descriptor: %w", err)
	}
	if _, err := f.WriteAt(h, 0); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	return f.Sync()
}

// sifState is a copy of the SIF header and one descriptor, taken before
// a resize rewrites them.
type sifState struct {
	descOff    int64
	head, desc []byte
}

func saveSIFState(f *os.File, slot int64) (*sifState, error) {
	s := &sifState{head: make([]byte, 128), desc: make([]byte, sifDescrLen)}
	if _, err := f.ReadAt(s.head, 0); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	s.descOff = int64(binary.LittleEndian.Uint64(s.head[sifHdrDescrOff:])) + slot*sifDescrLen
	if _, err := f.ReadAt(s.desc, s.descOff); err != nil {
		return nil, fmt.Errorf("reading descriptor: %w", err)
	}
	return s, nil
}

// restore writes the saved bytes back, modification times included.
func (s *sifState) restore(f *os.File) error {
	if _, err := f.WriteAt(s.desc, s.descOff); err != nil {
		return fmt.Errorf("writing descriptor: %w", err)
	}
	if _, err := f.WriteAt(s.head, 0); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	return f.Sync()
}

// loopDevice returns the loop device backed by path, or "".
func loopDevice(path string) string {
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == path {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		}
	}
	return ""
}

// extend grows f to end bytes. A fully allocated file (made without
// --sparse) gets the new range allocated too, so the overlay cannot run
// out of host space later; a sparse one stays sparse.
func extend(f *os.File, st os.FileInfo, end int64) error {
	if allocated(st) {
		err := unix.Fallocate(int(f.Fd()), 0, st.Size(), end-st.Size())
		if err == nil || !errors.Is(err, unix.EOPNOTSUPP) {
			return err
		}
	}
	return f.Truncate(end)
}
