package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// parseArgs parses husk's command line with parser: flags end at IMAGE
// (endFlagsAtImage), and the words passed through to the container after
// the first are kept from kong and appended to its target after the parse.
//
// kong pushes each word it takes as a positional back onto the front of
// its scanner, copying all the words after it: a parse costs the square of
// their number. `xargs husk exec img cmd` passes tens of thousands of
// names, and 20,000 took 5 s to parse.
//
// TODO: kong replaces bytes that are not UTF-8 with U+FFFD in what it
// parses: flag values (--env, --pwd, -B, --hostname) lose them, where the
// command's words after IMAGE, kept from kong, do not.
func parseArgs(parser *kong.Kong, args []string) (*kong.Context, error) {
	i := lastFixed(parser.Model.Node, args)
	args = dashesAfter(args, i)
	var tail []string
	// IMAGE, "--", CMD go to kong; the words after CMD wait.
	if i >= 0 && len(args) > i+3 {
		args, tail = args[:i+3], args[i+3:]
	}
	ctx, err := parser.Parse(args)
	if err != nil || len(tail) == 0 {
		return ctx, err
	}
	pos := ctx.Selected().Positional
	if len(pos) == 0 || !pos[len(pos)-1].Passthrough {
		return nil, fmt.Errorf("no command takes the words after %q", args[len(args)-1])
	}
	v := pos[len(pos)-1].Target
	v.Set(reflect.AppendSlice(v, reflect.ValueOf(tail)))
	return ctx, nil
}

// endFlagsAtImage inserts "--" where Apptainer stops parsing flags: after
// the last fixed positional (IMAGE, or IMAGE NAME for instance start) of a
// command whose trailing arguments are passed through to the container.
//
// Kong would otherwise keep taking husk's flags between IMAGE and the
// command, so `husk run img.sif -c 'echo hi'` meant --contain and lost the
// runscript's -c. Apptainer (cobra, not interspersed) gives the runscript
// every word after IMAGE; scripts written for it must mean the same here.
// stripDashes removes the "--" again at the head of the passed-through
// words.
func endFlagsAtImage(model *kong.Node, args []string) []string {
	return dashesAfter(args, lastFixed(model, args))
}

// dashesAfter puts "--" after args[i], unless one is there or i < 0.
func dashesAfter(args []string, i int) []string {
	if i < 0 || i+1 < len(args) && args[i+1] == "--" {
		return args
	}
	out := make([]string, 0, len(args)+1)
	out = append(out, args[:i+1]...)
	out = append(out, "--")
	return append(out, args[i+1:]...)
}

// lastFixed returns the index in args of the last fixed positional of a
// command whose trailing words pass through (IMAGE, or NAME for instance
// start), or -1 if there is none or a "--" comes before it. The walk only
// needs to know which flags take a value; anything it does not recognise
// is left for kong to report.
func lastFixed(model *kong.Node, args []string) int {
	node := model
	fixed := 0 // positionals of node seen so far
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return -1
		case strings.HasPrefix(a, "-") && a != "-":
			if !strings.Contains(a, "=") && flagTakesValue(node, a) {
				i++
			}
		default:
			if child := findChild(node, a); child != nil && fixed == 0 {
				node = child
				continue
			}
			fixed++
			pos := node.Positional
			if len(pos) > fixed && pos[fixed].Passthrough && fixed == len(pos)-1 {
				return i
			}
		}
	}
	return -1
}

// findChild returns node's subcommand called name (or one of its aliases).
func findChild(node *kong.Node, name string) *kong.Node {
	for _, c := range node.Children {
		if c.Type != kong.CommandNode {
			continue
		}
		if c.Name == name {
			return c
		}
		for _, al := range c.Aliases {
			if al == name {
				return c
			}
		}
	}
	return nil
}

// flagTakesValue reports whether the flag word a consumes the next word: a
// long flag (--name) that takes a value, or a group of short flags (-xy)
// whose letters take none up to a last one that does. A letter that takes
// a value with more after it has them for its value (-S/o, -Bsrc:dst), as
// kong reads it. Flags are looked up in node and its parents, as kong
// does; an unknown one is left for kong to report.
func flagTakesValue(node *kong.Node, a string) bool {
	if name, ok := strings.CutPrefix(a, "--"); ok {
		f := findFlag(node, func(f *kong.Flag) bool {
			return f.Name == name || slices.Contains(f.Aliases, name)
		})
		return f != nil && takesValue(f)
	}
	letters := []rune(strings.TrimPrefix(a, "-"))
	for i, c := range letters {
		f := findFlag(node, func(f *kong.Flag) bool { return f.Short == c })
		if f == nil {
			return false
		}
		if takesValue(f) {
			return i == len(letters)-1
		}
	}
	return false
}

// findFlag returns the first flag of node or its parents that match
// accepts, or nil.
func findFlag(node *kong.Node, match func(*kong.Flag) bool) *kong.Flag {
	for n := node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if match(f) {
				return f
			}
		}
	}
	return nil
}

func takesValue(f *kong.Flag) bool { return !f.IsBool() && !f.IsCounter() }
