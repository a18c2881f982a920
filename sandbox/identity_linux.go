// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// identityMounts binds the session's passwd, group and hostname files
// over the container's (COMPAT 7.2, 7.3, 7.6).
func (st *stage1State) identityMounts() error {
	spec := st.plan.Spec
	uid, gid := spec.UID, spec.GID
	if spec.Fakeroot {
		uid, gid = 0, 0
	}
	_, home := spec.homeSrcDst()
	user := st.plan.User
	user.Name, user.GID = spec.Username, gid
	groups := st.plan.Groups
	if spec.Fakeroot {
		groups = nil // root's groups are the container's own
	}

	// Root of a writable container edits the real files.
	inject := !(uid == 0 && spec.Writable)
	if inject && !spec.skips("files", "/etc/passwd") {
		err := st.injectFile("/etc/passwd", "passwd", func(b []byte) []byte {
			return injectPasswd(b, user, uid, home)
		})
		if err != nil {
			return err
		}
	}
	if inject && !spec.skips("files", "/etc/group") {
		err := st.injectFile("/etc/group", "group", func(b []byte) []byte {
			return injectGroup(b, groups, spec.Username)
		})
		if err != nil {
			return err
		}
	}

	if spec.Hostname != "" {
		src := st.sess.path("hostname")
		if err := os.WriteFile(src, []byte(spec.Hostname+"\n"), 0o644); err != nil {
			return err
		}
		return st.bindInto(hostMount{Tag: "files", Src: src, Dst: "/etc/hostname",
			Attr: attrBind})
	}
	return nil
}

// injectFile reads the container's file dst, writes edit's result to the
// session and binds it over dst. A container without the file is left
// alone with Apptainer's warning.
func (st *stage1State) injectFile(dst, name string, edit func([]byte) []byte) error {
	r, err := resolveIn(st.final, dst)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(st.final, r))
	if errors.Is(err, os.ErrNotExist) {
		st.log.Warn(name + " file doesn't exist in container, not updating")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the container's %s: %w", dst, err)
	}
	src := st.sess.path(name)
	if err := os.WriteFile(src, edit(b), 0o644); err != nil {
		return err
	}
	return st.bindInto(hostMount{Tag: "files", Src: src, Dst: dst, Attr: attrBind})
}
