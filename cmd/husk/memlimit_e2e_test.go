package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestStartupOver: each of husk's three processes says when its part of
// a container's start-up is over, and from then on collects at GOGC 50:
// walking the image, the collector runs (stage 1 caches what it reads)
// with heap goals near the live heap, not at the 56 MiB soft limit it
// would wait for if start-up never ended.
func TestStartupOver(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	// -printf %s stats every file: stage 1 makes a node for each, enough
	// garbage for a few collections on any machine (a bare find made 2-6).
	cmd := userCmd(dir, "--debug", "exec", img, "sh", "-c",
		`find / -xdev -printf '%s %p\n' | wc -l`)
	cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstderr: %s", err, errb.String())
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(out.String())); n < 1000 {
		t.Fatalf("find listed %q entries", out.String())
	}
	stderr := errb.String()
	// Not anchored: GODEBUG's trace, written by the stages' runtimes in
	// pieces, can break into a line (stage 1's first collection comes just
	// as it says start-up is over).
	over := regexp.MustCompile(`DEBUG:\s+start-up over( stage=(\d))?`)
	stages := map[string]bool{}
	for _, m := range over.FindAllStringSubmatch(stderr, -1) {
		stages[m[2]] = true
	}
	if !stages[""] || !stages["1"] || !stages["2"] || len(stages) != 3 {
		t.Errorf("start-up over logged by %v, want husk, stage 1 and stage 2; stderr:\n%s",
			stages, stderr)
	}
	gc := regexp.MustCompile(`(?m)^gc \d+ @.* (\d+) MB goal`)
	goals := gc.FindAllStringSubmatch(stderr, -1)
	if len(goals) < 3 {
		t.Fatalf("%d collections in all, want stage 1 collecting after start-up; "+
			"stderr:\n%s", len(goals), stderr)
	}
	for _, g := range goals {
		if mb, _ := strconv.Atoi(g[1]); mb > 40 {
			t.Errorf("a collection at a %d MB goal: %s", mb, g[0])
		}
	}
}
