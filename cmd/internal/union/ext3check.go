package union

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/husk-project/husk/ext3"
)

// checkOverlayDirs validates an ext3 overlay's upper/ and (for a writable
// overlay) work/ before anything is written to the image: each must be a
// readable directory, or missing. Missing ones are created afterwards by
// fusefs.NewExt3Layer, as Apptainer creates them in an otherwise empty
// image; that is the first write, and it only happens once the root
// directory read cleanly too. ext3.Open already refused a damaged
// superblock, group descriptor table, journal or root inode, and marks the
// image in use only at its first change, so an image refused here is left
// byte for byte as it was.
func checkOverlayDirs(fs *ext3.FS, writable bool) error {
	if _, err := fs.ReadDir(ext3.RootIno); err != nil {
		return fmt.Errorf("ext3 overlay /: %w", err)
	}
	names := []string{"upper"}
	if writable {
		names = append(names, "work")
	}
	for _, name := range names {
		a, err := fs.Lookup(ext3.RootIno, name)
		if errors.Is(err, syscall.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ext3 overlay /%s: %w", name, err)
		}
		if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return fmt.Errorf("ext3 overlay /%s: %w", name, syscall.ENOTDIR)
		}
		// Reads every block of the directory: a damaged one shows here,
		// not halfway through a container run.
		if _, err := fs.ReadDir(a.Ino); err != nil {
			return fmt.Errorf("ext3 overlay /%s: %w", name, err)
		}
	}
	return nil
}
