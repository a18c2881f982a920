package main

import (
	"errors"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"

	"github.com/husk-project/husk/cmd/internal/logfmt"
	"github.com/husk-project/husk/cmd/internal/union"
	"github.com/husk-project/husk/sandbox"
)

func main() {
	limitMemory()
	// The sandbox re-executes this binary for its inner stages; Main runs
	// those and never returns in them. The layers name their images in
	// their own errors (fusefs.LayerError), so a warning about a damaged
	// image says which one.
	sandbox.Main(union.Mounter{}, profileStage)
	// A shell's 3<file, Slurm's PMI_FD: the command gets them. An instance
	// daemon's are its foreground's (its status pipe), not a caller's.
	if os.Getenv(instanceFDEnv) == "" {
		sandbox.PassInheritedFDs()
	}
	applyEnvAliases()
	exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the command and returns the exit status: the
// container's, or 255 with one FATAL line when husk itself fails.
func run(args []string, stdout, stderr io.Writer) int {
	var cli CLI
	opts := []kong.Option{kong.Writers(stdout, stderr)}
	if !completing() {
		opts = append(opts, onlyCommand(args)...)
	}
	parser, err := newParser(&cli, opts...)
	if err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	if completing() {
		kongplete.Complete(parser, completionPredictors())
	}
	ctx, err := parseArgs(parser, args)
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			logfmt.Fatal(stderr, errors.New(pe.Error()+" (see husk --help)"))
			return 255
		}
		logfmt.Fatal(stderr, err)
		return 255
	}
	if !startsContainer(ctx.Selected()) {
		settleGC()
	}
	stopProfiles, err := startProfiles(cli.CPUProfile, cli.MemProfile)
	if err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	log := logfmt.New(stderr, cli.Debug)
	if cli.Debug {
		log = timed(log)
	}
	g := &globals{Log: log, Debug: cli.Debug, Stderr: stderr, Given: givenFlags(ctx)}
	err = ctx.Run(g)
	if perr := stopProfiles(); perr != nil {
		log.Warn(perr.Error())
	}
	if err != nil {
		logfmt.Fatal(stderr, explainFileLimit(err))
		return 255
	}
	return g.Code
}

// givenFlags names the flags the command line gave, each once. A flag
// kong set from a variable of the environment is not in ctx.Path.
func givenFlags(ctx *kong.Context) []string {
	var names []string
	seen := map[string]bool{}
	for _, p := range ctx.Path {
		if p.Flag != nil && !p.Resolved && !seen[p.Flag.Name] {
			seen[p.Flag.Name] = true
			names = append(names, p.Flag.Name)
		}
	}
	return names
}

// commandFields maps the words that select a top-level command to CLI's
// field for it.
var commandFields = map[string]string{
	"exec": "Exec", "run": "Run", "shell": "Shell", "test": "Test",
	"instance": "Instance", "overlay": "Overlay", "inspect": "Inspect",
	"sif": "Sif", "siftool": "Sif", "verify": "Verify", "sign": "Sign",
	"build": "Build", "completion": "Completion", "version": "Version",
}

// onlyCommand returns the option that builds the parser for the one
// top-level command args select, or none when that is not plain (help, an
// unknown word or flag): then the parser knows every command, to print
// help or name what is wrong.
//
// Building kong's model costs more CPU than anything else husk does
// before it starts a container, and most of it is the flags the action
// commands (exec, run, shell, test, instance start and run) each repeat;
// one command's model is a fifth of the whole. What a command's parse and
// help show does not depend on its siblings.
func onlyCommand(args []string) []kong.Option {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--debug", strings.HasPrefix(a, "--cpuprofile="),
			strings.HasPrefix(a, "--memprofile="):
		case a == "--cpuprofile", a == "--memprofile":
			i++
		default:
			field, ok := commandFields[a]
			if !ok {
				return nil
			}
			var others []string
			for _, f := range commandFields {
				if f != field {
					others = append(others, f)
				}
			}
			return []kong.Option{kong.IgnoreFields(`^CLI\.(` + strings.Join(others, "|") + `)$`)}
		}
	}
	return nil
}

// newParser builds husk's kong parser for cli.
//
// kong interpolates every variable it was given once per flag (to allow
// variables in variables), with a regular expression: with husk's many
// long help texts that was two thirds of the CPU time of `husk version`.
// helpVars are therefore put into the model before kong interpolates it,
// and kong gets no variables of its own; no help text uses variables
// itself. Even without variables kong runs its regular expression over
// every help text, so texts without a "$" (which interpolation leaves as
// they are) are set aside while it does, and put back after.
func newParser(cli *CLI, opts ...kong.Option) (*kong.Kong, error) {
	pairs := make([]string, 0, 2*len(helpVars))
	for k, v := range helpVars {
		pairs = append(pairs, "${"+k+"}", v)
	}
	texts := strings.NewReplacer(pairs...)
	type aside struct {
		help *string
		text string
	}
	var set []aside
	setAside := func(help *string) {
		*help = texts.Replace(*help)
		if *help != "" && !strings.Contains(*help, "$") {
			set = append(set, aside{help, *help})
			*help = ""
		}
	}
	expand := func(k *kong.Kong) error {
		return kong.Visit(k.Model, func(n kong.Visitable, next kong.Next) error {
			switch n := n.(type) {
			case *kong.Node:
				setAside(&n.Help)
			case *kong.Value:
				setAside(&n.Help)
				n.Default = texts.Replace(n.Default)
				n.Enum = texts.Replace(n.Enum)
				if n.Flag != nil {
					n.Flag.PlaceHolder = texts.Replace(n.Flag.PlaceHolder)
				}
			}
			return next(nil)
		})
	}
	opts = append([]kong.Option{
		kong.Name("husk"),
		kong.Description("Run Apptainer/Singularity SIF containers rootless, in one binary."),
		kong.PostBuild(expand),
		kong.DefaultEnvars("HUSK"),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
	}, opts...)
	k, err := kong.New(cli, opts...)
	for _, a := range set {
		*a.help = a.text
	}
	return k, err
}
