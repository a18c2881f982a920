package main

import (
	"errors"

	"github.com/husk-project/husk/sandbox"
)

// setupError words a failed container for the FATAL line. A setup that
// failed on a damaged image (the union's layer reported the fault, see
// sandbox.ImageError) is "IMAGE: what is wrong": the step that met the
// I/O error (an lstat of a mount point, say) says nothing to the user and
// stays in the debug log.
func setupError(err error) error {
	var ie *sandbox.ImageError
	if errors.As(err, &ie) {
		return damagedImage{ie}
	}
	return err
}

// damagedImage prints an ImageError without the stage's failure.
type damagedImage struct{ *sandbox.ImageError }

func (e damagedImage) Error() string { return e.Image + ": " + e.Problem }

func (e damagedImage) Unwrap() error { return e.ImageError }
