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
	applyEnvAliases()
	exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the command and returns the exit status: the
// container's, or 255 with one FATAL line when husk itself fails.
func run(args []string, stdout, stderr io.Writer) int {
	var cli CLI
	parser, err := newParser(&cli, kong.Writers(stdout, stderr))
	if err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	if completing() {
		kongplete.Complete(parser, completionPredictors())
	}
	ctx, err := parser.Parse(endFlagsAtImage(parser.Model.Node, args))
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			logfmt.Fatal(stderr, errors.New(pe.Error()+" (see husk --help)"))
			return 255
		}
		logfmt.Fatal(stderr, err)
		return 255
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
	g := &globals{Log: log, Debug: cli.Debug, Stderr: stderr}
	err = ctx.Run(g)
	if perr := stopProfiles(); perr != nil {
		log.Warn(perr.Error())
	}
	if err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	return g.Code
}

// newParser builds husk's kong parser for cli.
//
// kong interpolates every variable it was given once per flag (to allow
// variables in variables), with a regular expression: with husk's many
// long help texts that was two thirds of the CPU time of `husk version`.
// helpVars are therefore put into the model before kong interpolates it,
// and kong gets no variables of its own; no help text uses variables
// itself.
func newParser(cli *CLI, opts ...kong.Option) (*kong.Kong, error) {
	pairs := make([]string, 0, 2*len(helpVars))
	for k, v := range helpVars {
		pairs = append(pairs, "${"+k+"}", v)
	}
	texts := strings.NewReplacer(pairs...)
	expand := func(k *kong.Kong) error {
		return kong.Visit(k.Model, func(n kong.Visitable, next kong.Next) error {
			switch n := n.(type) {
			case *kong.Node:
				n.Help = texts.Replace(n.Help)
			case *kong.Value:
				n.Help = texts.Replace(n.Help)
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
	return kong.New(cli, opts...)
}
