package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/husk-project/husk/cmd/internal/build"
	"github.com/husk-project/husk/cmd/internal/overlay"
)

// Run implements `husk overlay create`.
func (c *OverlayCreateCmd) Run(g *globals) error {
	opts := overlay.Options{
		SizeMiB:    c.Size,
		Sparse:     c.Sparse,
		CreateDirs: c.CreateDir,
		Fakeroot:   c.Fakeroot,
		UID:        uint32(os.Getuid()),
		GID:        uint32(os.Getgid()),
	}
	return overlay.Create(c.Image, opts)
}

// Run implements `husk build`.
func (c *BuildCmd) Run(g *globals) error {
	var out bytes.Buffer
	if err := build.Build(c.Out, c.Rootfs, c.Force, &out); err != nil {
		return err
	}
	if g.Debug && out.Len() > 0 {
		g.Log.Debug(fmt.Sprintf("mksquashfs: %s", bytes.TrimSpace(out.Bytes())))
	}
	return nil
}

// Run implements `husk exec`.
func (c *ExecCmd) Run(g *globals) error {
	cmd := stripDashes(c.Command)
	if len(cmd) == 0 {
		return fmt.Errorf("husk exec needs a command to run after the image")
	}
	return runAction(g, "exec", &c.ActionFlags, c.Image, cmd)
}

// Run implements `husk run`.
func (c *RunCmd) Run(g *globals) error {
	return runAction(g, "run", &c.ActionFlags, c.Image, stripDashes(c.Args))
}

// Run implements `husk shell`.
func (c *ShellCmd) Run(g *globals) error {
	c.Shell = c.ShellPath
	return runAction(g, "shell", &c.ActionFlags, c.Image, stripDashes(c.Args))
}

// Run implements `husk test`.
func (c *TestCmd) Run(g *globals) error {
	return runAction(g, "test", &c.ActionFlags, c.Image, stripDashes(c.Args))
}

// stripDashes drops the "--" kong keeps at the head of a passthrough
// argument list.
func stripDashes(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}
