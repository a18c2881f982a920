// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"slices"
	"strings"
	"testing"
)

func TestParseFuseMount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FuseMount
		err  string
	}{
		{in: "host:squashfuse -f /a b.img /mnt/sq/",
			want: FuseMount{Args: []string{"squashfuse", "-f", "/a", "b.img"},
				Mountpoint: "/mnt/sq"}},
		{in: "container:sshfs  host:/x   /data",
			want: FuseMount{InContainer: true, Args: []string{"sshfs", "host:/x"},
				Mountpoint: "/data"}},
		{in: "host-daemon:fuse2fs img /m",
			want: FuseMount{Daemon: true, Args: []string{"fuse2fs", "img"}, Mountpoint: "/m"}},
		{in: "container-daemon:prog /m", want: FuseMount{InContainer: true, Daemon: true,
			Args: []string{"prog"}, Mountpoint: "/m"}},
		{in: "squashfuse x /mnt", err: "want host:, container:"},
		{in: "guest:squashfuse x /mnt", err: "want host:, container:"},
		{in: "host:/mnt", err: "want a FUSE command and a mount point"},
		{in: "host:squashfuse x mnt", err: `mount point "mnt" is not an absolute path`},
		{in: "host:squashfuse x /", err: "not an absolute path below /"},
	} {
		got, err := ParseFuseMount(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.InContainer != tc.want.InContainer ||
			got.Daemon != tc.want.Daemon || got.Mountpoint != tc.want.Mountpoint ||
			!slices.Equal(got.Args, tc.want.Args) {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
