// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"fmt"
	"strings"
	"syscall"
)

// idRange maps Size ids starting at Host in the parent user namespace to
// ids starting at Container in the child (one line of uid_map(5)).
type idRange struct {
	Container, Host, Size uint32
}

func (r idRange) String() string {
	return fmt.Sprintf("%d %d %d", r.Container, r.Host, r.Size)
}

// idMapping is the uid and gid mapping of a new user namespace.
//
// An unprivileged process may write a single line mapping its own id, and
// only after denying setgroups(2) (user_namespaces(7)); Go's SysProcAttr
// writes it between clone and exec. Mappings of subordinate id ranges
// (/etc/subuid) need the setuid newuidmap(1) and newgidmap(1) helpers
// instead, run by the parent on the child's pid.
//
// TODO(fakeroot-subuid): for --fakeroot with an /etc/subuid range
// (COMPAT 7.8), start stage 1 with CLONE_NEWUSER but no mappings, run
// newuidmap/newgidmap on its pid from stage 0, then send the plan. Stage 1
// already waits for the plan before doing anything, but it will have
// exec'd as an unmapped uid and lost its capabilities, so it must re-exec
// itself once the plan arrives. The payload then keeps running as
// stage 1's root (no nested namespace), as it does now.
type idMapping struct {
	UIDs, GIDs []idRange
	// Setgroups allows setgroups(2) in the namespace. It must stay false
	// for mappings written without newgidmap.
	Setgroups bool
}

// rootMapping is stage 1's namespace: root inside is the user outside.
func rootMapping(uid, gid uint32) idMapping {
	return idMapping{
		UIDs: []idRange{{Container: 0, Host: uid, Size: 1}},
		GIDs: []idRange{{Container: 0, Host: gid, Size: 1}},
	}
}

// userMapping is the payload's nested namespace without --fakeroot: the
// user's own ids inside map to root of stage 1's namespace, which is the
// user on the host. The payload thus sees its real uid and gid, has no
// capabilities after exec, and can still use everything stage 1 mounted.
func userMapping(uid, gid uint32) idMapping {
	return idMapping{
		UIDs: []idRange{{Container: uid, Host: 0, Size: 1}},
		GIDs: []idRange{{Container: gid, Host: 0, Size: 1}},
	}
}

// apply sets the mapping on attr, for a process started with
// CLONE_NEWUSER.
func (m idMapping) apply(attr *syscall.SysProcAttr) {
	for _, r := range m.UIDs {
		attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{
			ContainerID: int(r.Container), HostID: int(r.Host), Size: int(r.Size)})
	}
	for _, r := range m.GIDs {
		attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{
			ContainerID: int(r.Container), HostID: int(r.Host), Size: int(r.Size)})
	}
	attr.GidMappingsEnableSetgroups = m.Setgroups
}

func (m idMapping) String() string {
	var b strings.Builder
	for _, r := range m.UIDs {
		fmt.Fprintf(&b, "uid %v; ", r)
	}
	for _, r := range m.GIDs {
		fmt.Fprintf(&b, "gid %v; ", r)
	}
	return strings.TrimSuffix(b.String(), "; ")
}
