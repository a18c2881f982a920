package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/posener/complete"
	"github.com/willabides/kongplete"
)

// Shell completion: `husk completion bash|zsh|fish` prints the script to
// source; the shells then run husk itself with COMP_LINE set, and
// kongplete answers from the kong model (see run).

// CompletionCmd is `husk completion SHELL`.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// Help implements kong.HelpProvider.
func (CompletionCmd) Help() string {
	return `Prints the shell code that makes SHELL complete husk's commands and flags.

Examples:
  source <(husk completion bash)
  husk completion fish > ~/.config/fish/completions/husk.fish`
}

// completionScripts are kongplete's install fragments: the shell calls
// the binary back with COMP_LINE set.
var completionScripts = map[string]string{
	"bash": "complete -C ${bin} ${cmd}\n",
	"zsh": "autoload -U +X bashcompinit && bashcompinit\n" +
		"complete -C ${bin} ${cmd}\n",
	"fish": `function __complete_${cmd}
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    ${bin}
end
complete -f -c ${cmd} -a "(__complete_${cmd})"
`,
}

// Run implements `husk completion`.
func (c *CompletionCmd) Run(g *globals) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the husk binary: %w", err)
	}
	vars := map[string]string{"cmd": "husk", "bin": bin}
	script := os.Expand(completionScripts[c.Shell], func(s string) string {
		if v, ok := vars[s]; ok {
			return v
		}
		return "$" + s
	})
	_, err = fmt.Print(script)
	return err
}

// completionPredictors complete image and file arguments with paths.
func completionPredictors() kongplete.Option {
	return kongplete.WithPredictors(map[string]complete.Predictor{
		"file": complete.PredictFiles("*"),
		"image": complete.PredictOr(complete.PredictFiles("*.sif"),
			complete.PredictFiles("*.img"), complete.PredictDirs("*")),
	})
}

// completing says the shell asked for completions.
func completing() bool {
	return os.Getenv("COMP_LINE") != "" && strings.HasPrefix(
		filepath.Base(strings.Fields(os.Getenv("COMP_LINE") + " x")[0]), "husk")
}
