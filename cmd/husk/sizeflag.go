package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// sizeFlag is a memory size given as a number with an optional binary
// unit: 64M, 512MiB, 1Gi, 65536K (MB is MiB too). A bare number is in
// MiB, as overlay sizes are; an empty value means the default.
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
	if v == "" {
		*s = 0 // the default, as an empty HUSK_ variable leaves other flags
		return nil
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
	shift := map[string]uint{"": 20}
	for i, u := range []string{"K", "M", "G", "T"} {
		for _, suffix := range []string{"", "I", "B", "IB"} {
			shift[u+suffix] = uint(10 * (i + 1))
		}
	}
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
