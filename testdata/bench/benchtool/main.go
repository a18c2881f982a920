// Command benchtool is bench.sh's helper: the few things a shell script
// cannot do precisely or without husk's own CLI.
//
//	benchtool part IMAGE.sif         prints "OFFSET SIZE" of the primary
//	                                 partition (for loop and squashfuse_ll)
//	benchtool mk OUT.sif SQUASHFS    wraps a squashfs in a SIF laid out as
//	                                 `apptainer build` makes it (COMPAT §9)
//	benchtool run [flags] -- CMD...  runs CMD, prints "NS RC RSS_KIB": wall
//	                                 time, exit status and sampled peak RSS
//
// It lives under testdata/ so `go build ./...` and `go test ./...` skip it;
// bench.sh builds it with `go build ./testdata/bench/benchtool`.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  benchtool part IMAGE.sif
  benchtool mk OUT.sif SQUASHFS
  benchtool run [-user NAME] [-dir DIR] [-log FILE] [-rss EXE,...] -- CMD [ARGS...]`

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "part":
		err = part(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "mk":
		err = mk(os.Args[2], os.Args[3])
	case len(os.Args) > 2 && os.Args[1] == "run":
		err = run(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}
