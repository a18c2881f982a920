package main

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]int64{"64": 64 << 20, "64M": 64 << 20, "64MiB": 64 << 20,
		"64mb": 64 << 20, "1G": 1 << 30, "2GiB": 2 << 30, "4096K": 4 << 20, "1T": 1 << 40,
		"1": 1 << 20, "1Gi": 1 << 30, "2048ki": 2 << 20}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1M", "1.5G", "12X", "64 M", "0", "512K",
		"2T", "99999999999999999999", "1MM", "0x10"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}
