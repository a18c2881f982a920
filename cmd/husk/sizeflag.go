package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// sizeFlag is a memory size given as a number with an optional binary
// unit: 64M, 512MiB, 1G, 65536K. A bare number is in MiB, as overlay
// sizes are.
type sizeFlag int64

// Bounds of a sizeFlag: below a MiB the caches cannot keep one block of
// each kind they hold, and above a TiB the value is a typo.
const (
	minSizeFlag = 1 << 20
	maxSizeFlag = 1 << 40
)

// Decode implements kong.MapperValue.
func (s *sizeFlag) Decode(ctx *kong.DecodeContext) error {
	var v string
	if err := ctx.Scan.PopValueInto("size", &v); err != nil {
		return err
	}
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// parseSize parses a sizeFlag value.
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("%q is not a size (want a number of MiB, or one with a unit: "+
		"64M, 512MiB, 1G)", v)
	num := strings.TrimRight(v, "KMGTiBkmgtib")
	unit := strings.ToUpper(v[len(num):])
	shift := map[string]uint{"": 20, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20,
		"MIB": 20, "G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, bad
	}
	if n > maxSizeFlag>>sh {
		return 0, fmt.Errorf("%q is more than 1 TiB", v)
	}
	if n<<sh < minSizeFlag {
		return 0, fmt.Errorf("%q is less than 1 MiB", v)
	}
	return n << sh, nil
}
