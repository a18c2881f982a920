package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/husk-project/husk/sandbox"
)

func TestSetupError(t *testing.T) {
	eio := os.NewSyscallError("lstat", syscall.EIO)
	damaged := &sandbox.ImageError{Image: "/a.sif: partition 1",
		Problem: "squash: inode 5: bad type 99", Err: eio}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain I/O error", eio, "lstat: input/output error"},
		{"damaged image", damaged, "/a.sif: partition 1: squash: inode 5: bad type 99"},
		{"wrapped", fmt.Errorf("instance: %w", damaged),
			"/a.sif: partition 1: squash: inode 5: bad type 99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := setupError(c.err)
			if c.err == nil {
				if err != nil {
					t.Fatalf("setupError(nil) = %v", err)
				}
				return
			}
			if err.Error() != c.want {
				t.Errorf("got %q, want %q", err, c.want)
			}
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("%v does not wrap EIO", err)
			}
		})
	}
}
