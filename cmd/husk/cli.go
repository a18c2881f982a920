package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/alecthomas/kong"
)

// CLI is husk's command line. Flags follow Apptainer's names.
//
// As in Apptainer, husk's flags end at IMAGE (at NAME for instance start
// and run): endFlagsAtImage marks the spot with "--" before kong parses, so
// `husk exec img.sif ls -w` passes -w to ls.
type CLI struct {
	Debug bool `help:"Print debug messages (decisions, layer stack) on stderr." env:"HUSK_DEBUG"`

	VersionFlag versionFlag `name:"version" env:"-" help:"Print husk's version and exit."`

	CPUProfile string `name:"cpuprofile" placeholder:"FILE" help:"${cpuprofile}" env:"HUSK_CPUPROFILE"`
	MemProfile string `name:"memprofile" placeholder:"FILE" help:"${memprofile}" env:"HUSK_MEMPROFILE"`

	Exec       ExecCmd       `cmd:"" help:"Run a command in a container."`
	Run        RunCmd        `cmd:"" help:"Run the container's runscript."`
	Shell      ShellCmd      `cmd:"" help:"Start an interactive shell in a container."`
	Test       TestCmd       `cmd:"" help:"Run the container's test script."`
	Instance   InstanceCmd   `cmd:"" help:"Manage background container instances."`
	Overlay    OverlayCmd    `cmd:"" help:"Manage persistent overlay images."`
	Inspect    InspectCmd    `cmd:"" help:"Show the metadata of an image."`
	Sif        SifCmd        `cmd:"" aliases:"siftool" help:"Inspect and modify SIF files."`
	Verify     VerifyCmd     `cmd:"" help:"Verify the PGP signatures of a SIF."`
	Sign       SignCmd       `cmd:"" help:"Add PGP signatures to a SIF."`
	Build      BuildCmd      `cmd:"" help:"Build a SIF from a root filesystem directory."`
	Completion CompletionCmd `cmd:"" help:"Print a shell completion script."`
	Version    VersionCmd    `cmd:"" help:"Print husk's version."`
}

// globals is what every command's Run receives.
type globals struct {
	Log   *slog.Logger
	Debug bool
	// Code is the process exit status a command asks for.
	Code int
	// Stderr receives the INFO lines Apptainer always prints (instance
	// start and stop).
	Stderr io.Writer
	// Given names the flags given on the command line, in their order,
	// each once; those set from the environment are not among them.
	Given []string
}

// info prints an INFO line, shown even without --debug, as Apptainer's.
func (g *globals) info(msg string) {
	if g.Stderr != nil {
		fmt.Fprintf(g.Stderr, "%-8s %s\n", "INFO:", msg)
	}
}

// ActionFlags are the flags shared by exec, run and shell. Each also reads
// the environment variables Apptainer reads (APPTAINER_*), and HUSK_*
// first.
type ActionFlags struct {
	Overlay overlayFlag `short:"o" placeholder:"${op}" help:"${ov}" env:"HUSK_OVERLAY,APPTAINER_OVERLAY"`

	Writable bool `short:"w" help:"${writable}" env:"HUSK_WRITABLE,APPTAINER_WRITABLE"`

	WritableTmpfs bool `help:"${tmpfs}" env:"HUSK_WRITABLE_TMPFS,APPTAINER_WRITABLE_TMPFS"`

	// Bind and Mount take their variables as well as the flags (see
	// AfterApply).
	Bind []string `short:"B" placeholder:"${ph_bind}" help:"${bind}" env:"-"`

	Fakeroot bool `short:"f" help:"${fakeroot}" env:"HUSK_FAKEROOT,APPTAINER_FAKEROOT"`

	Home     string   `placeholder:"SRC[:DST]" help:"${home}" env:"HUSK_HOME,APPTAINER_HOME"`
	NoHome   bool     `help:"Do not bind the home directory." env:"HUSK_NO_HOME,APPTAINER_NO_HOME"`
	Pwd      string   `placeholder:"DIR" help:"${pwd}" env:"HUSK_PWD,APPTAINER_PWD"`
	Cleanenv bool     `short:"e" help:"${cleanenv}" env:"HUSK_CLEANENV,APPTAINER_CLEANENV"`
	Env      []string `sep:"none" env:"-" placeholder:"KEY=VALUE" help:"${envflag}"`
	EnvFile  []string `placeholder:"FILE" help:"${envfile}" env:"HUSK_ENV_FILE,APPTAINER_ENV_FILE"`
	NoEnv    []string `placeholder:"VAR" help:"${noenv}" env:"HUSK_NO_ENV,APPTAINER_NO_ENV"`
	NoEval   bool     `help:"${noeval}" env:"HUSK_NO_EVAL,APPTAINER_NO_EVAL"`
	NoUmask  bool     `help:"${noumask}" env:"HUSK_NO_UMASK,APPTAINER_NO_UMASK"`
	// Shell is set by `husk shell --shell` only.
	Shell    string `kong:"-"`
	Pid      bool   `short:"p" help:"Run in a new PID namespace." env:"HUSK_PID,APPTAINER_PID"`
	Hostname string `help:"${hostname}" env:"HUSK_HOSTNAME,APPTAINER_HOSTNAME"`

	Ipc        bool `short:"i" help:"Run in a new IPC namespace." env:"HUSK_IPC,APPTAINER_IPC"`
	Uts        bool `help:"Run in a new UTS namespace." env:"HUSK_UTS,APPTAINER_UTS"`
	Contain    bool `short:"c" help:"${contain}" env:"HUSK_CONTAIN,APPTAINER_CONTAIN"`
	Containall bool `short:"C" help:"${call}" env:"HUSK_CONTAINALL,APPTAINER_CONTAINALL"`
	Compat     bool `help:"${compat}" env:"HUSK_COMPAT,APPTAINER_COMPAT"`

	// Accepted for compatibility; husk always behaves this way.
	Userns bool `short:"u" help:"${userns}" env:"HUSK_USERNS,APPTAINER_USERNS"`
	NoInit bool `help:"${noinit}" env:"HUSK_NO_INIT,APPTAINER_NO_INIT"`

	NoMount []string `placeholder:"TAG|PATH" help:"${nomount}" env:"HUSK_NO_MOUNT,APPTAINER_NO_MOUNT"`

	Mount   []string `sep:"none" placeholder:"SPEC" help:"${mount}" env:"-"`
	Scratch []string `short:"S" placeholder:"DIR" help:"${scratch}" env:"HUSK_SCRATCH,APPTAINER_SCRATCH"`
	Workdir string   `short:"W" placeholder:"DIR" help:"${workdir}" env:"HUSK_WORKDIR,APPTAINER_WORKDIR"`
	DNS     string   `name:"dns" placeholder:"IP[,IP]" help:"${dns}" env:"HUSK_DNS,APPTAINER_DNS"`
	App     string   `placeholder:"NAME" help:"${app}" env:"HUSK_APP,APPTAINER_APP"`
	Sharens bool     `help:"${sharens}" env:"HUSK_SHARENS,APPTAINER_SHARENS"`

	CacheSize sizeFlag `placeholder:"SIZE" help:"${cachesize}" env:"HUSK_CACHE_SIZE"`

	SecurityFlags
	GPUFlags       // gpu.go
	FuseMountFlags // fusemount.go
}

// helpVars hold the longer help texts and environment lists, interpolated
// into the struct tags.
var helpVars = map[string]string{
	"cpuprofile": "Write a CPU profile (pprof) to FILE, and the container stages' " +
		"to FILE.stage1 (FUSE server) and FILE.stage2.",
	"memprofile": "Write a heap profile (pprof) to FILE at exit, and the container " +
		"stages' to FILE.stage1 and FILE.stage2.",
	"userns":  "Use a user namespace (husk always does; no effect).",
	"noinit":  "No init shim as PID 1 (husk has none; its supervisor reaps; no effect).",
	"compat":  "OCI-like defaults: --containall --no-umask --writable-tmpfs --no-eval.",
	"pidfile": "Write the instance's PID to FILE.",
	"img":     "SIF, squashfs image or root filesystem directory.",
	"ov": "Use an overlay image or directory: ext3 images and directories are " +
		"writable unless :ro is given, squashfs ones are read-only. Repeatable; later " +
		"ones lie above earlier ones.",
	"writable": "Write to the image itself: a SIF's embedded ext3 overlay partition, " +
		"or a sandbox directory.",
	"tmpfs":   "Make the container writable in memory (64 MiB); changes vanish at exit.",
	"op":      "PATH[:ro]",
	"ph_bind": "SRC[:DST[:ro|rw]]",
	"bind": "Bind a host path into the container. Repeatable, or comma separated; " +
		"$HUSK_BIND, $APPTAINER_BIND and $APPTAINER_BINDPATH add theirs.",
	"fakeroot": "Run as root (uid 0) inside the container; files you create are " +
		"stored as root's.",
	"home":     "Home directory to bind (default: yours; /root with --fakeroot).",
	"pwd":      "Initial working directory in the container (default: the current one).",
	"cleanenv": "Do not forward the host environment (only TERM and proxies).",
	"envflag": "Set an environment variable in the container, over the image's. " +
		"Repeatable.",
	"envfile": "Read KEY=VALUE assignments from FILE (evaluated on the host; " +
		"--env wins). Repeatable.",
	"noenv":   "Do not forward these host variables. Comma separated.",
	"noeval":  "Do not shell-evaluate APPTAINERENV_ and --env values in the container.",
	"noumask": "Use umask 0022 in the container instead of yours.",
	"shell":   "Shell to run instead of /bin/bash --norc (sets SINGULARITY_SHELL).",
	"contain": "Use private, empty home, /tmp and /var/tmp; do not bind the working " +
		"directory.",
	"call": "--contain plus new PID and IPC namespaces and --cleanenv.",
	"mount": "Bind mount, Docker style: type=bind,source=SRC,destination=DST[,ro]. " +
		"Repeatable; $HUSK_MOUNT and $APPTAINER_MOUNT add theirs.",
	"scratch": "Give DIR in the container a fresh private directory (under --workdir " +
		"if given, else in memory). Repeatable, or comma separated.",
	"workdir": "Host directory for /tmp, /var/tmp and home with --contain, and for " +
		"--scratch directories.",
	"dns": "Name servers to write into the container's /etc/resolv.conf, comma " +
		"separated.",
	"sharens": "Share one container with the other --sharens commands started by " +
		"the same parent process.",
	"app": "Run the SCIF app NAME (/scif/apps/NAME): its runscript, environment " +
		"and labels.",
	"nomount": "Skip a default mount: proc, sys, dev, home, tmp, cwd, bind-paths, or a " +
		"destination such as /etc/localtime. Comma separated.",
	"hostname": "Set the container's hostname (new UTS namespace).",
	"cachesize": "Memory for each squashfs image's caches of decoded blocks, metadata " +
		"and listings (husk only; default 32M).",
	"createdir": "Directory to create under upper/ (repeatable), e.g. for bind " +
		"targets.",
	"ovfakeroot": "Make upper/ and work/ owned by root, for use with --fakeroot.",
	"ovimage":    "New overlay file, or an existing SIF to add an overlay partition to.",
}

// ExecCmd is `husk exec IMAGE CMD [ARGS...]`.
type ExecCmd struct {
	ActionFlags
	Image   string   `arg:"" predictor:"image" help:"${img}"`
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
  husk exec instance://web ls /data

Every word after IMAGE belongs to the command, as in Apptainer.`
}

// RunCmd is `husk run IMAGE [ARGS...]`.
type RunCmd struct {
	ActionFlags
	Image string   `arg:"" predictor:"image" help:"${img}"`
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
	ShellPath string   `name:"shell" short:"s" help:"${shell}" env:"HUSK_SHELL,APPTAINER_SHELL"`
	Image     string   `arg:"" help:"${img}"`
	Args      []string `arg:"" optional:"" passthrough:"" help:"Arguments for the shell."`
}

// Help implements kong.HelpProvider.
func (ShellCmd) Help() string {
	return `Starts /bin/bash --norc (or /bin/sh) with the prompt "Apptainer> ", as
Apptainer does, so scripts that expect it keep working.

Example:
  husk shell --writable-tmpfs debian.sif`
}

// TestCmd is `husk test IMAGE [ARGS...]`.
type TestCmd struct {
	ActionFlags
	Image string   `arg:"" predictor:"image" help:"${img}"`
	Args  []string `arg:"" optional:"" passthrough:"" help:"Arguments for the test script."`
}

// Help implements kong.HelpProvider.
func (TestCmd) Help() string {
	return `Runs /.singularity.d/test with ARGS; exits 0 with an INFO line when the
image has no test script.

Example:
  husk test debian.sif`
}

// OverlayCmd groups the overlay subcommands.
type OverlayCmd struct {
	Create OverlayCreateCmd `cmd:"" help:"Create an ext3 overlay image, or add one to a SIF."`
	Resize OverlayResizeCmd `cmd:"" help:"Grow an ext3 overlay image or a SIF's overlay partition."`
	Info   OverlayInfoCmd   `cmd:"" help:"Show an overlay's size, usage and journal state."`
}

// OverlayCreateCmd is `husk overlay create`.
type OverlayCreateCmd struct {
	Size      int64    `short:"s" default:"64" help:"Size in MiB (at least 64)."`
	Sparse    bool     `short:"S" env:"HUSK_SPARSE,APPTAINER_SPARSE" help:"Create a sparse file."`
	CreateDir []string `placeholder:"DIR" help:"${createdir}"`
	Fakeroot  bool     `short:"f" env:"HUSK_FAKEROOT,APPTAINER_FAKEROOT" help:"${ovfakeroot}"`
	Image     string   `arg:"" help:"${ovimage}"`
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
	Force  bool   `short:"F" help:"Overwrite OUT.sif if it exists."`
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

// Help implements kong.HelpProvider.
func (VersionCmd) Help() string {
	return `Example:
  husk version`
}

// Run prints the module version.
func (VersionCmd) Run(g *globals) error {
	printVersion(os.Stdout)
	return nil
}

// versionFlag is --version, which Apptainer has besides its version
// command: it prints the version and exits.
type versionFlag bool

// BeforeReset implements kong's hook, called only when the flag is given.
func (versionFlag) BeforeReset(app *kong.Kong) error {
	printVersion(app.Stdout)
	app.Exit(0)
	return nil
}

func printVersion(w io.Writer) {
	v := "devel"
	bi, ok := debug.ReadBuildInfo()
	if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintln(w, "husk version", v)
}
