package overlay

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/husk-project/husk/ext3"
)

// ext3 geometry that bounds a growth: 32-bit block numbers and inode
// counts, 32-byte group descriptors, 8 x block size blocks per group.
const (
	ext3MaxBlocks = 1<<32 - 1
	ext3MaxInodes = 1<<32 - 1
	ext3DescSize  = 32
)

// maxGrowBytes is the largest size the file system described by sum can
// grow to in place: the group descriptor table may only take the reserved
// GDT blocks (none without resize_inode), and block and inode counts must
// fit 32 bits. ext3.Grow checks the same when it plans; checking first
// keeps a resize from extending the file for a size it cannot reach.
func maxGrowBytes(sum *ext3.Summary) int64 {
	bs := int64(sum.BlockSize)
	if bs == 0 || sum.Groups == 0 {
		return 0
	}
	perGroup := 8 * bs
	descPerBlock := bs / ext3DescSize
	gdt := (int64(sum.Groups) + descPerBlock - 1) / descPerBlock
	if strings.Contains(" "+sum.Features+" ", " resize_inode ") {
		gdt += int64(sum.ReservedGDTBlocks)
	}
	groups := gdt * descPerBlock
	if ipg := int64(sum.Inodes) / int64(sum.Groups); ipg > 0 {
		groups = min(groups, ext3MaxInodes/ipg)
	}
	first := int64(0)
	if bs == 1024 {
		first = 1 // block 0 holds the boot sector and superblock
	}
	blocks := min(first+groups*perGroup, ext3MaxBlocks)
	return blocks * bs
}

// checkGrowLimit refuses a size the file system cannot grow to.
func checkGrowLimit(sum *ext3.Summary, newSize int64) error {
	max := maxGrowBytes(sum)
	if newSize <= max {
		return nil
	}
	return fmt.Errorf("cannot grow the overlay to %d MiB: an ext3 file system with %d-byte "+
		"blocks, %d groups and %d reserved GDT blocks grows to at most %d MiB (a "+
		"larger overlay must be made anew with overlay create): %w", newSize>>20, sum.BlockSize,
		sum.Groups, sum.ReservedGDTBlocks, max>>20, syscall.EFBIG)
}

// hostAvail returns the bytes an unprivileged user may still allocate on
// the file system holding f. Tests replace it.
var hostAvail = func(f *os.File) (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * fs.Bsize, nil
}

// checkHostRoom refuses to grow a fully allocated file (extend allocates
// the new range) beyond the space left on the host file system. A sparse
// file only gets a hole, which takes no space now.
func checkHostRoom(f *os.File, st os.FileInfo, end int64) error {
	if !allocated(st) {
		return nil
	}
	need := end - st.Size()
	avail, err := hostAvail(f)
	if err != nil {
		return fmt.Errorf("checking free space: %w", err)
	}
	if avail >= need {
		return nil
	}
	return fmt.Errorf("growing needs %d MiB more on the file system holding it, but only "+
		"%d MiB are available (free some space, or make a sparse overlay with "+
		"'husk overlay create --sparse'): %w", (need+1<<20-1)>>20, avail>>20, syscall.ENOSPC)
}

// allocated says whether the file has a block for every byte (it was made
// without --sparse).
func allocated(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Blocks*512 >= st.Size()
}
