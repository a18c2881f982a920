package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestCompletion(t *testing.T) {
	setup(t)
	out, err := exec.Command(huskBin, "completion", "bash").Output()
	if err != nil || !strings.HasPrefix(string(out), "complete -C ") ||
		!strings.HasSuffix(string(out), " husk\n") {
		t.Errorf("completion bash: %q %v", out, err)
	}
	for line, want := range map[string]string{
		"husk ins":             "inspect\ninstance\n",
		"husk instance st":     "start\nstats\nstop\n",
		"husk exec --cleanen":  "--cleanenv\n",
		"husk sif ":            "add\ndel\ndump\nheader\ninfo\nlist\nnew\nsetprim\n",
		"husk completion f":    "fish\n",
		"husk overlay create ": "",
	} {
		cmd := exec.Command(huskBin)
		cmd.Env = []string{"COMP_LINE=" + line, "PATH=/usr/bin:/bin"}
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("COMP_LINE=%q: %v", line, err)
			continue
		}
		if want != "" && sortLines(string(out)) != want {
			t.Errorf("COMP_LINE=%q: %q, want %q", line, out, want)
		}
	}
}

func sortLines(s string) string {
	lines := strings.Fields(s)
	for i := range lines {
		for j := i + 1; j < len(lines); j++ {
			if lines[j] < lines[i] {
				lines[i], lines[j] = lines[j], lines[i]
			}
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// Every command's --help shows an example.
func TestHelpExamples(t *testing.T) {
	setup(t)
	for _, c := range [][]string{{"exec"}, {"run"}, {"shell"}, {"test"}, {"inspect"},
		{"instance", "start"}, {"instance", "run"}, {"instance", "list"}, {"instance", "stop"}, {"sif"},
		{"sif", "add"}, {"overlay", "create"}, {"build"}, {"completion"}, {"version"},
		{"instance", "stats"}, {"verify"}, {"sign"}} {
		out, _ := exec.Command(huskBin, append(c, "--help")...).CombinedOutput()
		if !strings.Contains(string(out), "Example") {
			t.Errorf("husk %s --help has no example:\n%s", strings.Join(c, " "), out)
		}
	}
}
