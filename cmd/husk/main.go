package main

import (
	"errors"
	"io"
	"os"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"

	"github.com/husk-project/husk/cmd/internal/logfmt"
	"github.com/husk-project/husk/sandbox"
)

func main() {
	// The sandbox re-executes this binary for its inner stages; Main runs
	// those and never returns in them.
	sandbox.Main(namingMounter{})
	applyEnvAliases()
	exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the command and returns the exit status: the
// container's, or 255 with one FATAL line when husk itself fails.
func run(args []string, stdout, stderr io.Writer) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("husk"),
		kong.Description("Run Apptainer/Singularity SIF containers rootless, in one binary."),
		kong.Writers(stdout, stderr),
		kong.Vars(helpVars),
		kong.DefaultEnvars("HUSK"),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
	)
	if err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	if completing() {
		kongplete.Complete(parser, completionPredictors())
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			logfmt.Fatal(stderr, errors.New(pe.Error()+" (see husk --help)"))
			return 255
		}
		logfmt.Fatal(stderr, err)
		return 255
	}
	g := &globals{Log: logfmt.New(stderr, cli.Debug), Debug: cli.Debug, Stderr: stderr}
	if err := ctx.Run(g); err != nil {
		logfmt.Fatal(stderr, err)
		return 255
	}
	return g.Code
}
