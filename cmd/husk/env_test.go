package main

import (
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// --env follows pflag's string-to-string rules, as Apptainer's does.
func TestSplitEnvFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string // substring of the error, "" for none
	}{
		{"A=1", []string{"A=1"}, ""},
		{"A=", []string{"A="}, ""},
		{"X=1,Y=2", []string{"X=1", "Y=2"}, ""},
		// One "=": a single pair, commas and all; quotes at the ends go.
		{"A=1,2", []string{"A=1,2"}, ""},
		{`"A=1,2"`, []string{"A=1,2"}, ""},
		{`A="x"`, []string{`A="x`}, ""},
		// More: one CSV line; a quoted field keeps its commas and "".
		{`A=1,"B=2,3"`, []string{"A=1", "B=2,3"}, ""},
		{`"A=say ""hi""",B=2`, []string{`A=say "hi"`, "B=2"}, ""},
		{"A=a=b", []string{"A=a=b"}, ""},
		{"A=1, B=2", []string{"A=1", " B=2"}, ""},
		{"A=1,B=2\nC=3", []string{"A=1", "B=2"}, ""},
		{"A", nil, "want KEY=VALUE"},
		{"", nil, "want KEY=VALUE"},
		{"A=1,B=2,C", nil, `"C" is not KEY=VALUE`},
		{`A=1,B="2`, nil, "quote"},
		{`A=1,B=x"y`, nil, "quote"},
	} {
		got, err := splitEnvFlag(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitEnvFlag(%q) = %q, %v; want an error with %q", tc.in, got,
					err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitEnvFlag(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// Pairs from one --env value are injected like separate flags; a later
// flag overrides an earlier one.
func TestBuildEnvSplitsEnvFlag(t *testing.T) {
	env, err := buildEnv(envInput{Home: "/h", Image: "/i/d.sif", Command: "exec",
		Env: []string{"X=1,Y=2", "Z=a,b", "Y=3"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range env.Inject {
		got[v.Key] = v.Value
	}
	want := map[string]string{"X": "1", "Y": "3", "Z": "a,b"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("injected %v, want %v", got, want)
	}
	_, err = buildEnv(envInput{Env: []string{"X=1,=2"}}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Error("--env X=1,=2: no error for the empty key")
	}
}

// TestShellEvalQuoting: every value makes one well-formed word; quotes
// and backslashes come out as a double-quoted word gives them (a value
// ending in an odd run of backslashes, or holding \", broke the script).
func TestShellEvalQuoting(t *testing.T) {
	for in, want := range map[string]string{
		`x"y`: `x"y`, `x\"y`: `x"y`, `a\\\`: `a\\`, `\`: `\`, `\\`: `\`, `"`: `"`,
		`a\\"b`: `a\"b`, `plain`: `plain`, `a\nb`: `a\nb`,
	} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellEval(in)).CombinedOutput()
		if err != nil || string(out) != want {
			t.Errorf("shellEval(%q) = %s: sh gave %q, %v; want %q", in, shellEval(in), out,
				err, want)
		}
	}
}
