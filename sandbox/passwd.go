// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// passwdEntry is one line of passwd(5).
type passwdEntry struct {
	Name, Gecos, Home, Shell string
	UID, GID                 uint32
}

func (e passwdEntry) line() string {
	return fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", e.Name, e.UID, e.GID, e.Gecos, e.Home, e.Shell)
}

// groupEntry is a group of the host user, by name and gid.
type groupEntry struct {
	Name string
	GID  uint32
}

// parsePasswdLine splits a passwd(5) line; ok is false for comments and
// malformed lines, which are kept as they are.
func parsePasswdLine(line string) (e passwdEntry, ok bool) {
	f := strings.Split(line, ":")
	if len(f) != 7 {
		return e, false
	}
	uid, err1 := strconv.ParseUint(f[2], 10, 32)
	gid, err2 := strconv.ParseUint(f[3], 10, 32)
	if err1 != nil || err2 != nil {
		return e, false
	}
	return passwdEntry{Name: f[0], UID: uint32(uid), GID: uint32(gid),
		Gecos: f[4], Home: f[5], Shell: f[6]}, true
}

// hostIdentity finds the host's passwd entry of uid and the names of the
// user's groups (gid first, then the supplementary groups of this
// process). Anything it cannot find is left out.
func hostIdentity(uid, gid uint32, log *slog.Logger) (passwdEntry, []groupEntry) {
	user := passwdEntry{UID: uid, GID: gid, Name: strconv.Itoa(int(uid)), Shell: "/bin/sh"}
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for line := range strings.Lines(string(b)) {
			if e, ok := parsePasswdLine(strings.TrimRight(line, "\n")); ok && e.UID == uid {
				user = e
				break
			}
		}
	} else {
		log.Debug("reading host passwd", "error", err)
	}

	gids := []uint32{gid}
	if sup, err := os.Getgroups(); err == nil {
		for _, g := range sup {
			gids = append(gids, uint32(g))
		}
	}
	names := map[uint32]string{}
	if b, err := os.ReadFile("/etc/group"); err == nil {
		for line := range strings.Lines(string(b)) {
			f := strings.Split(strings.TrimRight(line, "\n"), ":")
			if len(f) == 4 {
				if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					if _, dup := names[uint32(g)]; !dup {
						names[uint32(g)] = f[0]
					}
				}
			}
		}
	}
	var groups []groupEntry
	seen := map[uint32]bool{}
	for _, g := range gids {
		if name, ok := names[g]; ok && !seen[g] {
			seen[g] = true
			groups = append(groups, groupEntry{Name: name, GID: g})
		}
	}
	return user, groups
}

// injectPasswd returns the container's passwd file with an entry for the
// user (COMPAT 7.3): an existing line for uid is rewritten with the host
// name and gecos (kept for uid 0), the container home, and the container's
// gid and shell; otherwise the host entry is appended with the container
// home.
func injectPasswd(container []byte, user passwdEntry, uid uint32, home string) []byte {
	var out bytes.Buffer
	found := false
	for line := range strings.Lines(string(container)) {
		line = strings.TrimSuffix(line, "\n")
		e, ok := parsePasswdLine(line)
		if ok && e.UID == uid && !found {
			found = true
			if uid != 0 {
				e.Name, e.Gecos = user.Name, user.Gecos
			}
			e.Home = home
			line = e.line()
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if !found {
		e := user
		e.UID, e.Home = uid, home
		out.WriteString(e.line())
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// injectGroup returns the container's group file followed by one
// `name:x:gid:user` line per host group of the user that the container
// does not already define by gid (COMPAT 7.3).
func injectGroup(container []byte, groups []groupEntry, username string) []byte {
	var out bytes.Buffer
	out.Write(container)
	if len(container) > 0 && container[len(container)-1] != '\n' {
		out.WriteByte('\n')
	}
	have := map[string]bool{}
	for line := range strings.Lines(string(container)) {
		if f := strings.Split(strings.TrimRight(line, "\n"), ":"); len(f) == 4 {
			have[f[2]] = true
		}
	}
	for _, g := range groups {
		id := strconv.FormatUint(uint64(g.GID), 10)
		if have[id] {
			continue
		}
		have[id] = true
		fmt.Fprintf(&out, "%s:x:%s:%s\n", g.Name, id, username)
	}
	return out.Bytes()
}
