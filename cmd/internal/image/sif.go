package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// SIF global header fields checked before the sif library reads the file
// (COMPAT §1).
const (
	sifHeaderSize  = 128
	sifMagicOff    = 32
	sifDescrTotal  = 88  // int64: number of descriptor slots
	sifDescrOff    = 96  // int64: descriptor table offset
	sifDescrSize   = 104 // int64: descriptor table size
	sifDescrLen    = 585 // bytes per descriptor
	sifMaxDescr    = 1 << 16
	fsGocryptfs    = 6 // Apptainer's fork: gocryptfs squashfs
	sifErrNotASIF  = "not a SIF file"
	sifSignatureDT = sif.DataSignature
)

// checkSIFHeader validates the global header against the file size, so the
// sif library never reads past the end or allocates from a bogus count.
func checkSIFHeader(f *os.File, path string, size int64) error {
	h := make([]byte, sifHeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return fmt.Errorf("%s: truncated SIF: header ends past end of file", path)
	}
	if string(h[sifMagicOff:sifMagicOff+9]) != "SIF_MAGIC" {
		return fmt.Errorf("%s: %s: no SIF_MAGIC at offset %d", path, sifErrNotASIF, sifMagicOff)
	}
	total := int64(binary.LittleEndian.Uint64(h[sifDescrTotal:]))
	off := int64(binary.LittleEndian.Uint64(h[sifDescrOff:]))
	tsize := int64(binary.LittleEndian.Uint64(h[sifDescrSize:]))
	if total <= 0 || total > sifMaxDescr || tsize != total*sifDescrLen || off < sifHeaderSize {
		return fmt.Errorf("%s: corrupt SIF: bad descriptor table (%d slots, offset %d, size %d)",
			path, total, off, tsize)
	}
	if off+tsize > size {
		return fmt.Errorf("%s: truncated SIF: descriptor table ends past end of file", path)
	}
	return nil
}

// PrimaryIDs names the objects of prims, which should be one, as
// "objects 1, 2".
func PrimaryIDs(prims []sif.Descriptor) string {
	ids := make([]string, len(prims))
	for i, d := range prims {
		ids[i] = fmt.Sprint(d.ID())
	}
	return "objects " + strings.Join(ids, ", ")
}

// loadSIF reads the descriptors and fills Root, Overlays and Arch.
func (img *Image) loadSIF(size int64) error {
	if err := checkSIFHeader(img.File, img.Path, size); err != nil {
		return err
	}
	fi, err := sif.LoadContainer(img.File, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return fmt.Errorf("%s: invalid SIF: %w", img.Path, err)
	}
	defer fi.UnloadContainer()
	img.Arch = fi.PrimaryArch()

	prims, err := fi.GetDescriptors(sif.WithPartitionType(sif.PartPrimSys))
	switch {
	case err != nil:
		return fmt.Errorf("%s: invalid SIF: %w", img.Path, err)
	case len(prims) == 0:
		return fmt.Errorf("%s: no primary system partition in SIF", img.Path)
	case len(prims) > 1:
		return fmt.Errorf("%s: corrupt SIF: %s are all primary system partitions",
			img.Path, PrimaryIDs(prims))
	}
	prim := prims[0]
	root, err := img.partition(prim, size)
	if err != nil {
		return err
	}
	if root.FS != FSSquashfs {
		return fmt.Errorf("%s: primary system partition (ID %d) is %s, not squashfs: "+
			"ext3 root filesystems are not supported", img.Path, prim.ID(), root.FS)
	}
	if fst, _ := probeSection(img.File, root.Offset); fst != FSSquashfs {
		return fmt.Errorf("%s: corrupt SIF: primary system partition (ID %d) at offset %d "+
			"is not a squashfs filesystem", img.Path, prim.ID(), root.Offset)
	}
	if err := checkSquash(img.File, img.Path, *root); err != nil {
		return err
	}
	img.Root = root
	if _, _, arch, err := prim.PartitionMetadata(); err == nil && !archRuns(arch) {
		return fmt.Errorf("the image's architecture (%s) could not run on the host's (%s)",
			arch, runtime.GOARCH)
	}

	// Overlay and data partitions; an Overlay outside the PrimSys group is
	// ignored; one whose superblock does not check out goes to BadParts.
	group := prim.GroupID()
	descs, _ := fi.GetDescriptors(sif.WithDataType(sif.DataPartition))
	for _, d := range descs {
		_, pt, _, err := d.PartitionMetadata()
		if err != nil || d.ID() == prim.ID() || (pt != sif.PartOverlay && pt != sif.PartData) {
			continue
		}
		if pt == sif.PartOverlay && group > 0 && d.GroupID() != group {
			continue
		}
		sec, err := img.partition(d, size)
		if err != nil {
			return err
		}
		sec.Overlay = pt == sif.PartOverlay
		if err := checkPartition(img.File, *sec); err != nil {
			img.BadParts = append(img.BadParts, BadSection{Section: *sec, Err: err})
			continue
		}
		img.Overlays = append(img.Overlays, *sec)
	}
	return nil
}

// checkPartition says why sec does not hold the filesystem its descriptor
// names, or nil when its superblock checks out.
func checkPartition(f *os.File, sec Section) error {
	fst, err := probeSection(io.NewSectionReader(f, sec.Offset, sec.Size), 0)
	switch {
	case errors.Is(err, ErrNotExt3):
		return errors.New("an ext2 (no journal) or ext4 (features ext3 lacks) filesystem")
	case err != nil:
		return err
	case fst == sec.FS:
		return nil
	case fst != "":
		return fmt.Errorf("it holds a %s filesystem", fst)
	case sec.FS == FSExt3 && sec.Size < ext3MagicOff+2:
		return fmt.Errorf("%d bytes, too small for an ext3 superblock", sec.Size)
	case sec.FS == FSExt3:
		return fmt.Errorf("no ext3 superblock magic (0x%X at byte %d)", ext3Magic,
			ext3MagicOff)
	}
	return fmt.Errorf("no squashfs superblock magic (%q at byte 0)", squashMagic)
}

// partition turns a FS descriptor into a Section, checking its bounds.
func (img *Image) partition(d sif.Descriptor, size int64) (*Section, error) {
	fst, _, _, err := d.PartitionMetadata()
	if err != nil {
		return nil, fmt.Errorf("%s: partition %d: %w", img.Path, d.ID(), err)
	}
	if d.Offset() < 0 || d.Size() <= 0 || d.Offset()+d.Size() > size {
		return nil, fmt.Errorf("%s: truncated SIF: partition %d (offset %d, size %d) "+
			"ends past end of file (%d bytes)", img.Path, d.ID(), d.Offset(), d.Size(), size)
	}
	sec := &Section{Offset: d.Offset(), Size: d.Size(), ID: d.ID()}
	switch fst {
	case sif.FsSquash:
		sec.FS = FSSquashfs
	case sif.FsExt3:
		sec.FS = FSExt3
	case sif.FsEncryptedSquashfs:
		return nil, fmt.Errorf("%s: cannot mount device-mapper encrypted files without "+
			"setuid mode or root", img.Path)
	case fsGocryptfs:
		return nil, fmt.Errorf("%s: partition %d: gocryptfs encrypted SIFs are not supported",
			img.Path, d.ID())
	default:
		return nil, fmt.Errorf("%s: partition %d: unsupported filesystem type %s",
			img.Path, d.ID(), fst)
	}
	return sec, nil
}

// archRuns says whether binaries of a SIF arch run on this host.
func archRuns(arch string) bool {
	switch arch {
	case "", "unknown", runtime.GOARCH:
		return true
	case "386":
		return runtime.GOARCH == "amd64"
	case "arm":
		return runtime.GOARCH == "arm64"
	}
	return false
}

// SIFInfo is what `overlay create` needs to know about an existing SIF.
type SIFInfo struct {
	// Encrypted is true when the root partition is dm-crypt encrypted.
	Encrypted bool
	// Signed is true when the SIF has any Signature object.
	Signed bool
	// Ext3Overlay is the ID of a group-matched ext3 Overlay partition, or 0.
	Ext3Overlay uint32
	// Arch is the header's primary architecture (Go name).
	Arch string
	// Group is the PrimSys partition's group, 1 when there is none.
	Group uint32
	// ManyPrimaries names the primary partitions when there are more
	// than one (a corrupt SIF; Group is then 1), as PrimaryIDs does.
	ManyPrimaries string
}

// InspectSIF reads what `overlay create` must check before appending an
// overlay, without the checks that make Open refuse an image.
func InspectSIF(f *os.File, path string) (*SIFInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSIFHeader(f, path, st.Size()); err != nil {
		return nil, err
	}
	fi, err := sif.LoadContainer(f, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return nil, fmt.Errorf("%s: invalid SIF: %w", path, err)
	}
	defer fi.UnloadContainer()
	all, err := fi.GetDescriptors()
	if err != nil && !errors.Is(err, sif.ErrNoObjects) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, d := range all {
		if d.Offset() < 0 || d.Size() < 0 || d.Offset()+d.Size() > st.Size() {
			return nil, fmt.Errorf("%s: truncated SIF: object %d (offset %d, size %d) "+
				"ends past end of file (%d bytes)", path, d.ID(), d.Offset(), d.Size(),
				st.Size())
		}
	}

	info := &SIFInfo{Arch: fi.PrimaryArch(), Group: 1}
	if prims, _ := fi.GetDescriptors(sif.WithPartitionType(sif.PartPrimSys)); len(prims) > 1 {
		info.ManyPrimaries = PrimaryIDs(prims)
	}
	if prim, err := fi.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys)); err == nil {
		fst, _, _, _ := prim.PartitionMetadata()
		info.Encrypted = fst == sif.FsEncryptedSquashfs
		if prim.GroupID() > 0 {
			info.Group = prim.GroupID()
		}
	}
	sigs, err := fi.GetDescriptors(sif.WithDataType(sifSignatureDT))
	if err != nil && !errors.Is(err, sif.ErrNoObjects) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	info.Signed = len(sigs) > 0
	ovs, _ := fi.GetDescriptors(sif.WithPartitionType(sif.PartOverlay))
	for _, d := range ovs {
		fst, _, _, _ := d.PartitionMetadata()
		if fst == sif.FsExt3 && d.GroupID() == info.Group {
			info.Ext3Overlay = d.ID()
			break
		}
	}
	return info, nil
}

// SIFDataEnd is where the sif library writes the next object added to f:
// past the last object in use, which may be where deleted ones lay.
func SIFDataEnd(f *sif.FileImage) int64 {
	end := f.DataOffset()
	f.WithDescriptors(func(d sif.Descriptor) bool {
		end = max(end, d.Offset()+d.Size())
		return false
	})
	return end
}
