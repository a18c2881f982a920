package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scifTree writes SCIF apps under root: foo with a runscript, an
// environment, a program in bin/ and labels; bar with metadata only.
func scifTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"scif/apps/foo/scif/runscript": "#!/bin/sh\necho \"foo run $* $SCIF_APPNAME $FOOVAR\"\n",
		"scif/apps/foo/scif/env/01-base.sh": "SCIF_APPNAME=foo\nSCIF_APPROOT=/scif/apps/foo\n" +
			"export SCIF_APPNAME SCIF_APPROOT\n",
		"scif/apps/foo/scif/env/90-environment.sh": "export FOOVAR=fromapp\n",
		"scif/apps/foo/scif/labels.json":           "{\n\t\"SCIF_APP_NAME\": \"foo\"\n}\n",
		"scif/apps/foo/bin/foocmd":                 "#!/bin/sh\necho foocmd\n",
		"scif/apps/bar/scif/env/01-base.sh":        "SCIF_APPNAME=bar\nexport SCIF_APPNAME\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// --app runs an app's runscript with its environment, as Apptainer's
// action script and 95-apps.sh do.
func TestSCIFApps(t *testing.T) {
	setup(t)
	img, dir := debianSIF(t), workDir(t)
	apps := filepath.Join(dir, "apps")
	scifTree(t, apps)
	ov := apps + ":ro"

	if r := ok(t, dir, "run", "--overlay", ov, "--app", "foo", img, "x", "y"); r.stdout !=
		"foo run x y foo fromapp\n" {
		t.Errorf("run --app foo: %q", r.stdout)
	}
	r := ok(t, dir, "exec", "--overlay", ov, "--app", "foo", img, "sh", "-c",
		"foocmd; echo $FOOVAR $SCIF_APPROOT $APPTAINER_APPNAME $SINGULARITY_APPNAME")
	if r.stdout != "foocmd\nfromapp /scif/apps/foo foo foo\n" {
		t.Errorf("exec --app foo: %q", r.stdout)
	}
	if r := ok(t, dir, "exec", "--overlay", ov, img, "sh", "-c",
		"echo ${FOOVAR:-none} ${APPTAINER_APPNAME:-none}"); r.stdout != "none none\n" {
		t.Errorf("exec without --app: %q", r.stdout)
	}
	for _, c := range []struct{ args, want string }{
		{"run --app bar", "ERROR:   no runscript for contained app: bar"},
		{"test --app foo", "ERROR:   No tests for contained app: foo"},
		{"run --app nope", "ERROR:   Could not locate the container application: nope"},
	} {
		args := append(strings.Fields(c.args), "--overlay", ov, img)
		if r := husk(t, dir, args...); r.code != 1 || strings.TrimSpace(r.stderr) != c.want {
			t.Errorf("%s: %s", c.args, r)
		}
	}

	// inspect reads an app's metadata from the image itself.
	if r := ok(t, dir, "inspect", "--app", "foo", apps); r.stdout != "SCIF_APP_NAME: foo\n" {
		t.Errorf("inspect --app foo: %q", r.stdout)
	}
	r = ok(t, dir, "inspect", "--app", "foo", "--runscript", apps)
	if !strings.Contains(r.stdout, "echo \"foo run") {
		t.Errorf("inspect --app foo --runscript: %q", r.stdout)
	}
	if r := ok(t, dir, "inspect", "--list-apps", apps); r.stdout != "bar\nfoo\n" {
		t.Errorf("inspect --list-apps: %q", r.stdout)
	}
	fatalLine(t, husk(t, dir, "inspect", "--app", "nope", apps), "no app \"nope\"")
}
