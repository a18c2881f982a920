// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"slices"
	"testing"
)

func TestParseCaps(t *testing.T) {
	cases := []struct {
		in             string
		known, unknown []string
	}{
		{"", nil, nil},
		{"chown, CAP_KILL,cap_chown", []string{"CAP_CHOWN", "CAP_KILL"}, nil},
		{"net_raw,bogus,BOGUS", []string{"CAP_NET_RAW"}, []string{"CAP_BOGUS"}},
	}
	for _, c := range cases {
		k, u := ParseCaps(c.in)
		if !slices.Equal(k, c.known) || !slices.Equal(u, c.unknown) {
			t.Errorf("ParseCaps(%q) = %v, %v; want %v, %v", c.in, k, u, c.known, c.unknown)
		}
	}
	if k, _ := ParseCaps("kill,all"); len(k) != len(capNames) {
		t.Errorf("all gave %d capabilities, want %d", len(k), len(capNames))
	}
}

func TestCapsKeep(t *testing.T) {
	all := uint64(1)<<len(capNames) - 1
	cases := []struct {
		caps Caps
		root bool
		want uint64
	}{
		{Caps{}, false, 0},
		{Caps{}, true, all},
		{Caps{Add: []string{"CAP_KILL"}}, false, 1 << 5},
		{Caps{Drop: []string{"CAP_CHOWN"}}, true, all &^ 1},
		{Caps{NoPrivs: true, Add: []string{"CAP_KILL"}}, true, 1 << 5},
		{Caps{Add: []string{"CAP_KILL"}, Drop: []string{"CAP_KILL"}}, false, 0},
	}
	for _, c := range cases {
		if got := c.caps.keep(c.root); got != c.want {
			t.Errorf("%+v root=%v: keep %x, want %x", c.caps, c.root, got, c.want)
		}
	}
	if err := (Caps{Add: []string{"CAP_NOPE"}}).validate(); err == nil {
		t.Error("validate accepted an unknown capability")
	}
}
