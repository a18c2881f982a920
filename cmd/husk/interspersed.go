package main

import (
	"strings"

	"github.com/alecthomas/kong"
)

// endFlagsAtImage inserts "--" where Apptainer stops parsing flags: after
// the last fixed positional (IMAGE, or IMAGE NAME for instance start) of a
// command whose trailing arguments are passed through to the container.
//
// Kong would otherwise keep taking husk's flags between IMAGE and the
// command, so `husk run img.sif -c 'echo hi'` meant --contain and lost the
// runscript's -c. Apptainer (cobra, not interspersed) gives the runscript
// every word after IMAGE; scripts written for it must mean the same here.
// The walk only needs to know which flags take a value; anything it does
// not recognise is left for kong to report. stripDashes removes the "--"
// again at the head of the passed-through words.
func endFlagsAtImage(model *kong.Node, args []string) []string {
	node := model
	fixed := 0 // positionals of node seen so far
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args
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
				if i+1 < len(args) && args[i+1] == "--" {
					return args
				}
				out := make([]string, 0, len(args)+1)
				out = append(out, args[:i+1]...)
				out = append(out, "--")
				return append(out, args[i+1:]...)
			}
		}
	}
	return args
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

// flagTakesValue reports whether the flag word a (--name or -x, or a group
// of short flags -xy whose last one decides) consumes the next word, looking
// in node and its parents as kong does.
func flagTakesValue(node *kong.Node, a string) bool {
	long := strings.HasPrefix(a, "--")
	name := strings.TrimLeft(a, "-")
	for n := node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if !matchFlag(f, name, long) {
				continue
			}
			return !f.IsBool() && !f.IsCounter()
		}
	}
	return false
}

func matchFlag(f *kong.Flag, name string, long bool) bool {
	if long {
		if f.Name == name {
			return true
		}
		for _, al := range f.Aliases {
			if al == name {
				return true
			}
		}
		return false
	}
	// A short group such as -cw: only its last letter can take a value.
	r := []rune(name)
	return len(r) > 0 && f.Short == r[len(r)-1]
}
