// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"sort"
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
// With --fakeroot and a subordinate range, stage 1's namespace maps root
// to the user and 1..N to the range (fakeroot_linux.go); the payload then
// runs as stage 1's root, in no nested namespace.
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

// MappedIDs returns how many uids and how many gids this process's user
// namespace maps, counting up from 0 without a gap. In stage 1 that is
// 1 and 1 for the one-id mapping, and 1+N with --fakeroot's subordinate
// range of N ids; the union uses it to pick its owner translation.
// Unreadable maps count as 1.
func MappedIDs() (uids, gids uint32) {
	return mappedFrom0("/proc/self/uid_map"), mappedFrom0("/proc/self/gid_map")
}

// mappedFrom0 reads a uid_map or gid_map file: the length of the run of
// mapped ids that starts at 0.
func mappedFrom0(file string) uint32 {
	f, err := os.Open(file)
	if err != nil {
		return 1
	}
	defer f.Close()
	var rs []idRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r idRange
		if _, err := fmt.Sscan(sc.Text(), &r.Container, &r.Host, &r.Size); err == nil {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Container < rs[j].Container })
	var n uint32
	for _, r := range rs {
		if r.Container != n {
			break
		}
		n += r.Size
	}
	return max(n, 1)
}
