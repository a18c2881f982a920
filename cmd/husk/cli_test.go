package main

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/husk-project/husk/cmd/internal/logfmt"
)

func parse(t *testing.T, args ...string) (*CLI, string) {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("husk"), kong.Vars(helpVars), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse(args)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return &cli, ctx.Command()
}

func TestParseAction(t *testing.T) {
	cases := []struct {
		args    []string
		command []string
		check   func(*ActionFlags) bool
	}{
		{[]string{"exec", "i.sif", "ls", "-la"}, []string{"ls", "-la"}, nil},
		{[]string{"exec", "i.sif", "--", "ls", "-w"}, []string{"ls", "-w"}, nil},
		{[]string{"exec", "i.sif", "echo", "--bind", "x"}, []string{"echo", "--bind", "x"}, nil},
		{[]string{"exec", "-o", "a.img,b.img:ro", "--overlay", "c", "i.sif", "true"},
			[]string{"true"}, func(f *ActionFlags) bool {
				return reflect.DeepEqual(f.Overlay, []string{"a.img", "b.img:ro", "c"})
			}},
		{[]string{"exec", "--env", "A=1,2", "--env", "B=x", "i.sif", "env"}, []string{"env"},
			func(f *ActionFlags) bool {
				return reflect.DeepEqual(f.Env, []string{"A=1,2", "B=x"})
			}},
		{[]string{"exec", "-B", "/a:/b:ro,/c", "-w", "-f", "-e", "i.sif", "true"},
			[]string{"true"}, func(f *ActionFlags) bool {
				return reflect.DeepEqual(f.Bind, []string{"/a:/b:ro", "/c"}) && f.Writable &&
					f.Fakeroot && f.Cleanenv
			}},
		// Kong still parses husk flags between IMAGE and the command.
		{[]string{"exec", "i.sif", "-w", "true"}, []string{"true"},
			func(f *ActionFlags) bool { return f.Writable }},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			cli, _ := parse(t, c.args...)
			if got := stripDashes(cli.Exec.Command); !reflect.DeepEqual(got, c.command) {
				t.Errorf("command %q, want %q", got, c.command)
			}
			if c.check != nil && !c.check(&cli.Exec.ActionFlags) {
				t.Errorf("flags %+v", cli.Exec.ActionFlags)
			}
		})
	}
}

func TestOverlayEnv(t *testing.T) {
	t.Setenv("APPTAINER_OVERLAY", "x.img:ro,y.img")
	cli, _ := parse(t, "run", "i.sif")
	if !reflect.DeepEqual(cli.Run.Overlay, []string{"x.img:ro", "y.img"}) {
		t.Fatalf("overlay from APPTAINER_OVERLAY: %q", cli.Run.Overlay)
	}
}

func TestOverlayEnvAlias(t *testing.T) {
	t.Setenv("APPTAINER_OVERLAY", "")
	os.Unsetenv("APPTAINER_OVERLAY")
	t.Setenv("SINGULARITY_OVERLAY", "legacy.img")
	applyEnvAliases()
	cli, _ := parse(t, "run", "i.sif")
	if !reflect.DeepEqual(cli.Run.Overlay, []string{"legacy.img"}) {
		t.Fatalf("overlay from SINGULARITY_OVERLAY: %q", cli.Run.Overlay)
	}
}

func TestFatalFormat(t *testing.T) {
	var b bytes.Buffer
	code := run([]string{"exec", "--no-such-flag", "i.sif", "true"}, &b, &b)
	if code != 255 || !strings.HasPrefix(b.String(), "FATAL:   ") ||
		strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("exit %d, output %q; want 255 and one FATAL line", code, b.String())
	}
	b.Reset()
	logfmt.New(&b, false).Warn("careful")
	logfmt.New(&b, false).Info("hidden")
	if b.String() != "WARNING: careful\n" {
		t.Fatalf("log output %q", b.String())
	}
}

func TestBuildEnv(t *testing.T) {
	host := []string{"FOO=bar", "HOME=/h", "PATH=/x", "LD_LIBRARY_PATH=/l",
		"APPTAINER_X=1", "SINGULARITYENV_A=s", "APPTAINERENV_A=a", "APPTAINERENV_B=b",
		"HUSKENV_C=c", "APPTAINERENV_HOME=/bad", "TERM=xterm", "PS1=$ "}
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	env, err := buildEnv(envInput{Host: host, Home: "/home/u", Image: "/i/d.sif",
		Command: "exec", Env: []string{"B=override"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Join(env.Base, " ")
	for _, want := range []string{"FOO=bar", "HOME=/home/u", "PATH=" + DefaultPath, "TERM=xterm",
		"APPTAINER_CONTAINER=/i/d.sif", "APPTAINER_NAME=d.sif", "SINGULARITY_NAME=d.sif"} {
		if !strings.Contains(base, want) {
			t.Errorf("base env lacks %s: %s", want, base)
		}
	}
	for _, kv := range env.Base {
		for _, bad := range []string{"PATH=/x", "HOME=/h", "LD_LIBRARY_PATH=", "APPTAINER_X=",
			"PS1="} {
			if kv == bad || strings.HasPrefix(kv, bad) && strings.HasSuffix(bad, "=") {
				t.Errorf("base env has %s", kv)
			}
		}
	}
	want := []envVar{{"A", "a"}, {"B", "override"}, {"C", "c"}}
	if !reflect.DeepEqual(env.Inject, want) {
		t.Errorf("inject %v, want %v", env.Inject, want)
	}

	env, _ = buildEnv(envInput{Host: host, Cleanenv: true, Home: "/r", Image: "/i"}, log)
	base = strings.Join(env.Base, " ")
	if strings.Contains(base, "FOO") || !strings.Contains(base, "TERM=xterm") ||
		!strings.Contains(base, "LANG=C") {
		t.Errorf("--cleanenv base env: %s", base)
	}
}

func TestParseBinds(t *testing.T) {
	got, err := parseBinds([]string{"/a", "/b:/c", "/d:/e:ro"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Dst != "/a" || got[1].Dst != "/c" || !got[2].ReadOnly {
		t.Fatalf("binds %+v", got)
	}
	if _, err := parseBinds([]string{"/a:/b:xx"}); err == nil {
		t.Fatal("bad bind option accepted")
	}
}
