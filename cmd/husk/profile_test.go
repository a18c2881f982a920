package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestProfiles: --cpuprofile and --memprofile (relative paths) write
// pprof files for husk and for both container stages, and --debug stamps
// every line, the stages' included, with the time since husk started;
// stage 1 says it read the payload's programs ahead.
func TestProfiles(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	r := ok(t, dir, "--debug", "--cpuprofile", "c.prof", "--memprofile", "m.prof",
		"exec", img, "true")
	for _, base := range []string{"c.prof", "m.prof"} {
		for _, suffix := range []string{"", ".stage1", ".stage2"} {
			checkProfile(t, filepath.Join(dir, base+suffix))
		}
	}

	stamp := regexp.MustCompile(` t=[0-9]+\.[0-9]ms$`)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(line, "DEBUG:") {
			continue // the payload's arguments span lines
		}
		for _, step := range []string{"union mounted", "pivoted", "payload started",
			"union unmounted"} {
			if strings.Contains(line, step) {
				seen[step] = true
				if !stamp.MatchString(line) && step != "payload started" {
					t.Errorf("no t= at the end of %q", line)
				}
			}
		}
	}
	if len(seen) != 4 {
		t.Errorf("steps logged: %v, want all four; stderr:\n%s", seen, r.stderr)
	}
	// Stage 1 reads the launcher and the command ahead (warm.go).
	if !strings.Contains(r.stderr, "programs read ahead programs=[/bin/sh true]") {
		t.Errorf("no reading ahead of /bin/sh and true logged; stderr:\n%s", r.stderr)
	}
}

// checkProfile asserts that path is a non-empty gzipped pprof profile.
func checkProfile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: not a pprof profile: %v", path, err)
		return
	}
	data, err := io.ReadAll(z)
	if err != nil || len(data) == 0 {
		t.Errorf("%s: %d bytes of profile, %v", path, len(data), err)
	}
}
