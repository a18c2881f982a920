package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// CLI is husk's command line. Flags follow Apptainer's names.
//
// Kong parses husk's own flags wherever they appear before the container
// command, including between IMAGE and the command (Apptainer stops at
// IMAGE). `husk exec img.sif -w ls` therefore takes -w as --writable; put
// a command that starts with "-" after "--": `husk exec img.sif -- -x`.
type CLI struct {
	Debug bool `help:"Print debug messages (decisions, layer stack) on stderr." env:"HUSK_DEBUG"`

	Exec    ExecCmd    `cmd:"" help:"Run a command in a container."`
	Run     RunCmd     `cmd:"" help:"Run the container's runscript."`
	Shell   ShellCmd   `cmd:"" help:"Start an interactive shell in a container."`
	Overlay OverlayCmd `cmd:"" help:"Manage persistent overlay images."`
	Build   BuildCmd   `cmd:"" help:"Build a SIF from a root filesystem directory."`
	Version VersionCmd `cmd:"" help:"Print husk's version."`
}

// globals is what every command's Run receives.
type globals struct {
	Log   *slog.Logger
	Debug bool
	// Code is the process exit status a command asks for.
	Code int
}

// ActionFlags are the flags shared by exec, run and shell.
type ActionFlags struct {
	Overlay       []string `short:"o" placeholder:"PATH[:ro]" env:"HUSK_OVERLAY,APPTAINER_OVERLAY" help:"Use an overlay image or directory: ext3 images and directories are writable unless :ro is given, squashfs ones are read-only. Repeatable; later ones lie above earlier ones."`
	Writable      bool     `short:"w" env:"HUSK_WRITABLE,APPTAINER_WRITABLE" help:"Write to the image itself: a SIF's embedded ext3 overlay partition, or a sandbox directory."`
	WritableTmpfs bool     `env:"HUSK_WRITABLE_TMPFS,APPTAINER_WRITABLE_TMPFS" help:"Make the container writable in memory (64 MiB); changes vanish at exit."`
	Bind          []string `short:"B" placeholder:"SRC[:DST[:ro|rw]]" env:"HUSK_BIND,APPTAINER_BIND" help:"Bind a host path into the container. Repeatable, or comma separated."`
	Fakeroot      bool     `short:"f" env:"HUSK_FAKEROOT,APPTAINER_FAKEROOT" help:"Run as root (uid 0) inside the container; files you create are stored as root's."`
	Home          string   `placeholder:"SRC[:DST]" env:"HUSK_HOME,APPTAINER_HOME" help:"Home directory to bind (default: yours; /root with --fakeroot)."`
	NoHome        bool     `env:"HUSK_NO_HOME,APPTAINER_NO_HOME" help:"Do not bind the home directory."`
	Pwd           string   `placeholder:"DIR" env:"HUSK_PWD,APPTAINER_PWD" help:"Initial working directory in the container (default: the current one)."`
	Cleanenv      bool     `short:"e" env:"HUSK_CLEANENV,APPTAINER_CLEANENV" help:"Do not forward the host environment (only TERM and proxies)."`
	Env           []string `sep:"none" placeholder:"KEY=VALUE" help:"Set an environment variable in the container, over the image's. Repeatable."`
	Pid           bool     `short:"p" env:"HUSK_PID,APPTAINER_PID" help:"Run in a new PID namespace."`
	Hostname      string   `env:"HUSK_HOSTNAME,APPTAINER_HOSTNAME" help:"Set the container's hostname (new UTS namespace)."`
}

// ExecCmd is `husk exec IMAGE CMD [ARGS...]`.
type ExecCmd struct {
	ActionFlags
	Image   string   `arg:"" help:"SIF, squashfs image or root filesystem directory."`
	Command []string `arg:"" passthrough:"" help:"Command and its arguments."`
}

// Help implements kong.HelpProvider.
func (ExecCmd) Help() string {
	return `Runs CMD inside the container and exits with its status (255 if husk fails).

Examples:
  husk exec debian.sif python3 -c 'print(1)'
  husk overlay create --create-dir /data o.img
  husk exec --overlay o.img debian.sif sh -c 'echo hi > /data/x'
  husk exec --fakeroot --overlay o.img debian.sif rm /usr/bin/tail
  husk exec --fakeroot --writable-tmpfs debian.sif touch /opt/y
  husk exec -B /data:/mnt:ro debian.sif ls /mnt

Husk flags placed after IMAGE are still taken as husk flags; put "--" before
a command that starts with "-".`
}

// RunCmd is `husk run IMAGE [ARGS...]`.
type RunCmd struct {
	ActionFlags
	Image string   `arg:"" help:"SIF, squashfs image or root filesystem directory."`
	Args  []string `arg:"" optional:"" passthrough:"" help:"Arguments for the runscript."`
}

// Help implements kong.HelpProvider.
func (RunCmd) Help() string {
	return `Runs /.singularity.d/runscript with ARGS, or /bin/sh when the image has none.

Example:
  husk run --overlay o.img debian.sif`
}

// ShellCmd is `husk shell IMAGE`.
type ShellCmd struct {
	ActionFlags
	Image string   `arg:"" help:"SIF, squashfs image or root filesystem directory."`
	Args  []string `arg:"" optional:"" passthrough:"" help:"Arguments for the shell."`
}

// Help implements kong.HelpProvider.
func (ShellCmd) Help() string {
	return `Starts /bin/bash --norc (or /bin/sh) with the prompt "Apptainer> ", as
Apptainer does, so scripts that expect it keep working.

Example:
  husk shell --writable-tmpfs debian.sif`
}

// OverlayCmd groups the overlay subcommands.
type OverlayCmd struct {
	Create OverlayCreateCmd `cmd:"" help:"Create an ext3 overlay image, or add one to a SIF."`
}

// OverlayCreateCmd is `husk overlay create`.
type OverlayCreateCmd struct {
	Size      int64    `short:"s" default:"64" help:"Size in MiB (at least 64)."`
	Sparse    bool     `short:"S" env:"HUSK_SPARSE,APPTAINER_SPARSE" help:"Create a sparse file."`
	CreateDir []string `placeholder:"DIR" help:"Directory to create under upper/ (repeatable), e.g. for bind targets."`
	Fakeroot  bool     `short:"f" env:"HUSK_FAKEROOT,APPTAINER_FAKEROOT" help:"Make upper/ and work/ owned by root, for use with --fakeroot."`
	Image     string   `arg:"" help:"New overlay file, or an existing SIF to add an overlay partition to."`
}

// Help implements kong.HelpProvider.
func (OverlayCreateCmd) Help() string {
	return `Creates a journaled ext3 image with upper/ and work/ at its root, as
'apptainer overlay create' does, without running mkfs. If IMAGE is a SIF
you can write, the overlay is appended to it; use it with --writable.

Examples:
  husk overlay create --size 1024 o.img
  husk overlay create --sparse --create-dir /data o.img
  husk overlay create debian.sif && husk exec --writable debian.sif touch /x`
}

// BuildCmd is `husk build OUT.sif ROOTFS_DIR`.
type BuildCmd struct {
	Out    string `arg:"" name:"OUT.sif" help:"SIF to write."`
	Rootfs string `arg:"" name:"ROOTFS_DIR" help:"Root filesystem directory."`
}

// Help implements kong.HelpProvider.
func (BuildCmd) Help() string {
	return `Packs ROOTFS_DIR with mksquashfs (gzip) and writes a SIF laid out as
'apptainer build' makes it. Run as root to keep file owners; otherwise every
file becomes root's.

Example:
  debootstrap --variant=minbase bookworm rootfs && husk build debian.sif rootfs`
}

// VersionCmd is `husk version`.
type VersionCmd struct{}

// Run prints the module version.
func (VersionCmd) Run(g *globals) error {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Println("husk version", v)
	return nil
}
