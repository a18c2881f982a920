package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/ext3"
	"github.com/husk-project/husk/squash"
)

// Kind is the type of an image file as a whole.
type Kind int

// Image kinds, in the order they are tried.
const (
	KindDir Kind = iota + 1
	KindSIF
	KindSquashfs
	KindExt3
)

func (k Kind) String() string {
	switch k {
	case KindDir:
		return "directory"
	case KindSIF:
		return "SIF"
	case KindSquashfs:
		return "squashfs"
	case KindExt3:
		return "ext3"
	}
	return "unknown"
}

// FSType is the filesystem of one section of an image.
type FSType string

// Filesystems husk can serve from a section.
const (
	FSSquashfs FSType = "squashfs"
	FSExt3     FSType = "ext3"
)

// Section is one filesystem inside an image file: the whole file for a bare
// image, a partition for a SIF.
type Section struct {
	FS     FSType `json:"fs"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// ID is the SIF descriptor ID, 0 for a bare image.
	ID uint32 `json:"id,omitempty"`
	// Overlay is true for a SIF partition of type Overlay (false: Data).
	Overlay bool `json:"overlay,omitempty"`
}

// BadSection is a SIF partition that is not the filesystem its
// descriptor says, and why.
type BadSection struct {
	Section
	Err error
}

// Error says which partition of which file is bad, in the words of the
// messages that refuse it.
func (b BadSection) Error(path string) error {
	kind := "data"
	if b.Overlay {
		kind = "overlay"
	}
	return fmt.Errorf("%s: %s partition (object %d) is not a valid %s image: %w", path, kind,
		b.ID, b.FS, b.Err)
}

// BadExt3Overlay returns the error for the first bad ext3 overlay
// partition, or nil when there is none.
func (img *Image) BadExt3Overlay() error {
	for _, b := range img.BadParts {
		if b.Overlay && b.FS == FSExt3 {
			return b.Error(img.Path)
		}
	}
	return nil
}

// Image is an opened image file or directory.
type Image struct {
	// Path is absolute with symlinks resolved; messages use it.
	Path string
	Kind Kind
	// File is the open image; nil for a directory. It is opened read-write
	// only when writable use was asked for and the user may write it.
	File *os.File
	// Writable says File was opened read-write (for a directory: the user
	// may write it).
	Writable bool
	// Root is the root filesystem: the PrimSys partition of a SIF or the
	// whole of a bare image. Nil for a directory.
	Root *Section
	// Overlays are a SIF's overlay and data partitions (PrimSys group only),
	// in descriptor order.
	Overlays []Section
	// BadParts are a SIF's overlay and data partitions (PrimSys group
	// only) whose filesystem does not check out. Apptainer skips them
	// silently; husk warns, and refuses them where one is needed.
	BadParts []BadSection
	// Arch is a SIF's primary architecture as a Go name ("amd64").
	Arch string

	locks []lockKey // sections locked through this image
	// dirLock holds a directory overlay's lock (LockDir).
	dirLock *os.File
}

// Magic numbers and offsets used for detection (COMPAT §3.1).
const (
	probeSize      = 2048   // bytes of the file searched for SIF_MAGIC and a launch line
	squashMagic    = "hsqs" // squashfs superblock s_magic, little endian 0x73717368
	squashCompOff  = 20     // squashfs superblock: compression id (uint16)
	ext3MagicOff   = 1080   // 1024 (superblock) + 56 (s_magic)
	ext3Magic      = 0xEF53
	ext3CompatOff  = 1024 + 92 // s_feature_compat
	ext3IncompOff  = 1024 + 96 // s_feature_incompat
	ext3ROCompOff  = 1024 + 100
	ext3HasJournal = 0x4
	// Only these incompat (filetype, recover, meta_bg) and ro_compat
	// (sparse_super, large_file, btree_dir) bits are allowed in an ext3.
	ext3IncompatOK = 0x2 | 0x4 | 0x10
	ext3ROCompatOK = 0x1 | 0x2 | 0x4
)

// ErrNotExt3 is returned for an ext2/ext4 image or one with ext4 features.
var ErrNotExt3 = errors.New("file is not a valid ext3 image")

// Open opens path and detects its type. With writable, a file the user may
// write is opened read-write; otherwise, and whenever the user lacks write
// permission, it is opened read-only and Image.Writable is false.
func Open(path string, writable bool) (*Image, error) {
	if path == "" {
		// filepath.Abs would make it the working directory, a sandbox.
		return nil, errors.New("no image given: the image path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("could not open image %s: %w", path, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	} else if errors.Is(err, os.ErrNotExist) {
		if t := transport(path); t != "" {
			return nil, fmt.Errorf("%s: husk runs local images only (SIF files, ext3 "+
				"images, directories), not %s ones: pull it into a SIF first, e.g. with "+
				"apptainer pull", path, t)
		}
		return nil, fmt.Errorf("image %s not found: no such file or directory", path)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("could not open image %s: %w", path, unwrapPath(err))
	}
	if unix.Access(abs, unix.R_OK) != nil {
		return nil, fmt.Errorf("%s is not readable by the current user, check permissions", abs)
	}
	canWrite := unix.Access(abs, unix.W_OK) == nil
	if fi.IsDir() {
		return &Image{Path: abs, Kind: KindDir, Writable: writable && canWrite}, nil
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file or directory", abs)
	}

	flag := os.O_RDONLY
	if writable && canWrite {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(abs, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("could not open image %s: %w", abs, unwrapPath(err))
	}
	img := &Image{Path: abs, File: f, Writable: flag == os.O_RDWR}
	if err := img.detect(fi.Size()); err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// Close closes the image file, which also drops its locks.
func (img *Image) Close() error {
	if img.dirLock != nil {
		img.unlock()
		img.dirLock.Close()
		img.dirLock = nil
	}
	if img.File == nil {
		return nil
	}
	img.unlock()
	return img.File.Close()
}

// detect fills Kind, Root and Overlays from the file's contents.
func (img *Image) detect(size int64) error {
	head := make([]byte, probeSize)
	n, err := img.File.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("%s: reading header: %w", img.Path, err)
	}
	head = head[:n]

	if bytes.Contains(head, []byte("SIF_MAGIC")) {
		img.Kind = KindSIF
		return img.loadSIF(size)
	}
	off := launchLineEnd(head)
	switch fs, err := probeSection(img.File, off); {
	case err != nil:
		return fmt.Errorf("%s: %w", img.Path, err)
	case fs == FSSquashfs:
		img.Kind = KindSquashfs
	case fs == FSExt3:
		img.Kind = KindExt3
	default:
		return fmt.Errorf("%s: unknown image format: not a SIF, squashfs or ext3 image",
			img.Path)
	}
	img.Root = &Section{FS: img.kindFS(), Offset: off, Size: size - off}
	if img.Kind == KindSquashfs {
		return checkSquash(img.File, img.Path, *img.Root)
	}
	return nil
}

// checkSquash opens the squashfs in sec, so that a corrupt superblock or
// table is reported here, naming the file, before any sandbox starts.
func checkSquash(f *os.File, path string, sec Section) error {
	_, err := squash.Open(io.NewSectionReader(f, sec.Offset, sec.Size), sec.Size, nil)
	if err == nil {
		return nil
	}
	if sec.ID != 0 {
		return fmt.Errorf("%s: partition %d: %w", path, sec.ID, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func (img *Image) kindFS() FSType {
	if img.Kind == KindExt3 {
		return FSExt3
	}
	return FSSquashfs
}

// launchLineEnd returns the offset just after a legacy launch line (one that
// contains " run-singularity"), or 0 when there is none.
func launchLineEnd(head []byte) int64 {
	i := bytes.Index(head, []byte(" run-singularity"))
	if i < 0 {
		return 0
	}
	nl := bytes.IndexByte(head[i:], '\n')
	if nl < 0 {
		return 0
	}
	return int64(i + nl + 1)
}

// probeSection says which filesystem starts at off: squashfs, ext3, or ""
// for neither. An ext3 magic with features Apptainer refuses gives
// ErrNotExt3; a squashfs with an unknown compressor gives an error too.
func probeSection(r io.ReaderAt, off int64) (FSType, error) {
	sb := make([]byte, 1024+1024)
	n, err := r.ReadAt(sb, off)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading superblock at offset %d: %w", off, err)
	}
	sb = sb[:n]
	if len(sb) >= 96 && string(sb[:4]) == squashMagic {
		comp := binary.LittleEndian.Uint16(sb[squashCompOff:])
		if comp < 1 || comp > 6 {
			return "", fmt.Errorf("corrupted image: unknown compression algorithm value %d",
				comp)
		}
		return FSSquashfs, nil
	}
	if len(sb) >= ext3ROCompOff+4 &&
		binary.LittleEndian.Uint16(sb[ext3MagicOff:]) == ext3Magic {
		compat := binary.LittleEndian.Uint32(sb[ext3CompatOff:])
		incompat := binary.LittleEndian.Uint32(sb[ext3IncompOff:])
		rocompat := binary.LittleEndian.Uint32(sb[ext3ROCompOff:])
		if extra := ext3.FeatureNames(0, incompat&^ext3IncompatOK,
			rocompat&^ext3ROCompatOK); len(extra) > 0 {
			return "", fmt.Errorf("%w: it has features ext3 lacks (%s)", ErrNotExt3,
				strings.Join(extra, ", "))
		}
		if compat&ext3HasJournal == 0 {
			return "", fmt.Errorf("%w: it has no journal (ext2)", ErrNotExt3)
		}
		return FSExt3, nil
	}
	return "", nil
}

// unwrapPath drops the *os.PathError layer, whose path the caller already
// names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// transport is the URI scheme Apptainer would fetch path with (docker://,
// library://, oras://, oci-archive: ...), or "" for a local path.
func transport(path string) string {
	for _, t := range []string{"library://", "docker://", "docker-archive:", "docker-daemon:",
		"oci:", "oci-archive:", "oras://", "shub://", "http://", "https://"} {
		if strings.HasPrefix(path, t) {
			return strings.TrimRight(t, ":/")
		}
	}
	return ""
}
