// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Subordinate id files (subuid(5), subgid(5)); tests point them elsewhere.
var (
	subUIDFile = "/etc/subuid"
	subGIDFile = "/etc/subgid"
)

// minSubIDs is the smallest range --fakeroot uses: Apptainer's
// validRangeCount, enough for every id a distribution's packages own.
const minSubIDs = 65536

// subRange is a user's range of subordinate ids: Count ids from Start.
type subRange struct {
	Start, Count uint32
}

// errNoSubIDs says the file has no usable range for the user.
var errNoSubIDs = errors.New("no range")

// subIDRange finds the range of the user (by name or by uid) in a subuid
// or subgid file, as Apptainer picks it (internal/pkg/fakeroot): an entry
// of exactly 65536 ids, else the largest one above that. Smaller ranges
// are ignored; a disabled entry ("!name:...") is an error.
func subIDRange(file, name string, uid uint32) (subRange, error) {
	f, err := os.Open(file)
	if err != nil {
		return subRange{}, err
	}
	defer f.Close()
	var best subRange
	disabled, small := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) < 3 || fields[0] == "" || strings.HasPrefix(fields[0], "#") {
			continue
		}
		owner, off := strings.CutPrefix(fields[0], "!")
		if owner != name && owner != strconv.FormatUint(uint64(uid), 10) {
			continue
		}
		start, err1 := strconv.ParseUint(fields[1], 10, 32)
		count, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			continue
		}
		if off {
			disabled = true
			continue
		}
		r := subRange{Start: uint32(start), Count: uint32(count)}
		switch {
		case r.Count < minSubIDs:
			small = true
		case r.Count == minSubIDs:
			return r, nil
		case r.Count > best.Count:
			best = r
		}
	}
	if err := sc.Err(); err != nil {
		return subRange{}, fmt.Errorf("reading %s: %w", file, err)
	}
	switch {
	case best.Count > 0:
		return best, nil
	case disabled:
		return subRange{}, fmt.Errorf("%w: the entry for %s in %s is disabled", errNoSubIDs,
			name, file)
	case small:
		return subRange{}, fmt.Errorf("%w: the entries for %s in %s have fewer than %d ids",
			errNoSubIDs, name, file, minSubIDs)
	}
	return subRange{}, fmt.Errorf("%w: %s is not listed in %s", errNoSubIDs, name, file)
}
