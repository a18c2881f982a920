// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"slices"
	"strings"
)

// Caps are the capabilities the payload keeps (--add-caps, --drop-caps,
// --no-privs), as Apptainer computes them in user-namespace mode. All of
// them are capabilities in the container's user namespace only: they
// never reach beyond what the user owns on the host.
//
// The zero value changes nothing: a payload run without --fakeroot has
// no capabilities after exec (it is not root), one run with --fakeroot
// has every capability of the namespace (it is its root).
type Caps struct {
	// Add are capability names (CAP_CHOWN ...) the payload gets: raised
	// as ambient capabilities for a payload that is not root, so that
	// they survive exec. Root has them anyway.
	Add []string
	// Drop are capability names removed from the payload's bounding set,
	// so that root cannot have them either.
	Drop []string
	// NoPrivs leaves root (--fakeroot) with no capability but those in
	// Add, as Apptainer's --no-privs does.
	NoPrivs bool
}

// capNames are the kernel's capability names by number (capability.h),
// up to CAP_CHECKPOINT_RESTORE (40).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
	"CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// ParseCaps splits a comma-separated capability list as Apptainer does:
// names are case-insensitive, the CAP_ prefix is optional, and "all" means
// every capability. It returns the known names (CAP_ form, without
// duplicates) and the unknown ones.
func ParseCaps(list string) (known, unknown []string) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	for _, c := range strings.Split(list, ",") {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		switch {
		case c == "CAP_ALL":
			return slices.Clone(capNames), nil
		case !slices.Contains(capNames, c):
			if !slices.Contains(unknown, c) {
				unknown = append(unknown, c)
			}
		case !slices.Contains(known, c):
			known = append(known, c)
		}
	}
	return known, unknown
}

// capMask turns names into a bit mask by capability number.
func capMask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		i := slices.Index(capNames, n)
		if i < 0 {
			return 0, fmt.Errorf("sandbox: unknown capability %q", n)
		}
		m |= 1 << i
	}
	return m, nil
}

func (c Caps) validate() error {
	if _, err := capMask(c.Add); err != nil {
		return err
	}
	_, err := capMask(c.Drop)
	return err
}

// zero says the payload gets the default capabilities.
func (c Caps) zero() bool {
	return len(c.Add) == 0 && len(c.Drop) == 0 && !c.NoPrivs
}

// keep is the mask of capabilities the payload may hold (its bounding
// set): for root all of them, or none with NoPrivs, plus Add; for another
// user only Add; minus Drop either way (COMPAT: Apptainer's
// prepareRootCaps and prepareUserCaps without setuid).
func (c Caps) keep(root bool) uint64 {
	add, _ := capMask(c.Add)
	drop, _ := capMask(c.Drop)
	var m uint64
	if root && !c.NoPrivs {
		m = 1<<len(capNames) - 1
	}
	return (m | add) &^ drop
}
