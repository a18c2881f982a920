// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

// Package testns holds what the tests of several packages share about
// mounts made in a mount namespace of a test's own (see ext3's and
// fusefs's kernelns_test.go): a process that creates a mount namespace
// copies every mount of the one it leaves, so a test's kernel mounts are
// made where nobody can copy them, and such a namespace first drops its
// copies of the other tests' mounts.
package testns

import (
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of mountinfo.
type Mount struct{ Target, FSType, Source string }

// ThreadMounts lists the mounts of the calling thread's namespace
// (/proc/self would be the main thread's).
func ThreadMounts() ([]Mount, error) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	var ms []Mount
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		ms = append(ms, Mount{unescape(f[4]), g[0], g[1]})
	}
	return ms, nil
}

// DetachForeign drops the calling thread's namespace's copies of FUSE,
// overlay, squashfs and loop mounts (other tests' images): holding them
// would do to those tests what other namespaces did to ours. Errors are
// ignored: a mount under one already detached is gone with it.
func DetachForeign() {
	ms, err := ThreadMounts()
	if err != nil {
		return
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Target) > len(ms[j].Target) })
	for _, m := range ms {
		if m.Target != "/" && (m.FSType == "overlay" || m.FSType == "squashfs" ||
			strings.HasPrefix(m.FSType, "fuse") || strings.HasPrefix(m.Source, "/dev/loop")) {
			unix.Unmount(m.Target, unix.MNT_DETACH)
		}
	}
}

// unescape undoes the octal escapes (\040 for a space) of a mountinfo
// path.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
