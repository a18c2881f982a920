package main

import (
	"slices"
	"testing"
)

// TestPayloadPrograms: stage 1 is told to read ahead the launcher and
// what it starts next, or the command when it runs without a shell.
func TestPayloadPrograms(t *testing.T) {
	for _, tc := range []struct {
		command string
		argv    []string
		args    []string
		want    []string
	}{
		{"exec", []string{"/bin/sh", "-c", "script", "husk-exec", "python3", "-V"},
			[]string{"python3", "-V"}, []string{"/bin/sh", "python3"}},
		{"shell", []string{"/bin/sh", "-c", "script", "husk-shell"}, nil,
			[]string{"/bin/sh", "/bin/bash"}},
		{"run", []string{"/bin/sh", "-c", "script", "husk-run", "x"}, []string{"x"},
			[]string{"/bin/sh"}},
		{"exec", []string{"/app"}, []string{"/app"}, []string{"/app"}},
	} {
		if got := payloadPrograms(tc.command, tc.argv, tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("%s %q: %q, want %q", tc.command, tc.args, got, tc.want)
		}
	}
}
