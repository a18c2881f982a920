package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/husk-project/husk/cmd/internal/logfmt"
)

func parse(t *testing.T, args ...string) (*CLI, string) {
	t.Helper()
	var cli CLI
	p, err := newParser(&cli, kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := parseArgs(p, args)
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
				return reflect.DeepEqual([]string(f.Overlay), []string{"a.img", "b.img:ro", "c"})
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
		// As in Apptainer, every word after IMAGE is the command's.
		{[]string{"exec", "i.sif", "-w", "true"}, []string{"-w", "true"},
			func(f *ActionFlags) bool { return !f.Writable }},
		{[]string{"exec", "-B", "/x", "i.sif", "ls", "-B", "/y"}, []string{"ls", "-B", "/y"},
			func(f *ActionFlags) bool { return reflect.DeepEqual(f.Bind, []string{"/x"}) }},
		{[]string{"exec", "--bind=/x", "-wB", "/z", "i.sif", "--", "-x"}, []string{"-x"},
			func(f *ActionFlags) bool {
				return f.Writable && reflect.DeepEqual(f.Bind, []string{"/x", "/z"})
			}},
		{[]string{"--debug", "exec", "-e", "i.sif", "sh", "-c", "echo"},
			[]string{"sh", "-c", "echo"}, func(f *ActionFlags) bool { return f.Cleanenv }},
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
	if !reflect.DeepEqual([]string(cli.Run.Overlay), []string{"x.img:ro", "y.img"}) {
		t.Fatalf("overlay from APPTAINER_OVERLAY: %q", cli.Run.Overlay)
	}
}

func TestOverlayEnvAlias(t *testing.T) {
	t.Setenv("APPTAINER_OVERLAY", "")
	os.Unsetenv("APPTAINER_OVERLAY")
	t.Setenv("SINGULARITY_OVERLAY", "legacy.img")
	applyEnvAliases()
	cli, _ := parse(t, "run", "i.sif")
	if !reflect.DeepEqual([]string(cli.Run.Overlay), []string{"legacy.img"}) {
		t.Fatalf("overlay from SINGULARITY_OVERLAY: %q", cli.Run.Overlay)
	}
	// An empty variable is no overlay, unlike an empty --overlay value.
	t.Setenv("SINGULARITY_OVERLAY", "")
	t.Setenv("HUSK_OVERLAY", "")
	os.Unsetenv("APPTAINER_OVERLAY")
	applyEnvAliases()
	if cli, _ := parse(t, "run", "i.sif"); len(cli.Run.Overlay) != 0 {
		t.Fatalf("overlay from empty variables: %q", cli.Run.Overlay)
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
		"HUSKENV_C=c", "APPTAINERENV_HOME=/bad", "TERM=xterm", "PS1=$ ", "DROP=1"}
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	env, err := buildEnv(envInput{Host: host, Home: "/home/u", Image: "/i/d.sif",
		Command: "exec", Env: []string{"B=override"}, NoEnv: []string{"DROP"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range env.Host {
		got[v.Key] = v.Value
	}
	if got["FOO"] != "bar" || got["TERM"] != "xterm" || got["PS1"] != "$ " {
		t.Errorf("host vars %v", env.Host)
	}
	for _, bad := range []string{"PATH", "HOME", "LD_LIBRARY_PATH", "APPTAINER_X", "DROP",
		"APPTAINERENV_A"} {
		if _, ok := got[bad]; ok {
			t.Errorf("host var %s forwarded", bad)
		}
	}
	eng := map[string]string{}
	for _, v := range env.Engine {
		eng[v.Key] = v.Value
	}
	if eng["HOME"] != "/home/u" || eng["APPTAINER_CONTAINER"] != "/i/d.sif" ||
		eng["SINGULARITY_NAME"] != "d.sif" || eng["APPTAINER_COMMAND"] != "exec" {
		t.Errorf("engine vars %v", env.Engine)
	}
	want := []envVar{{"A", "a", true}, {"B", "override", true}, {"C", "c", true}}
	if !reflect.DeepEqual(env.Inject, want) {
		t.Errorf("inject %v, want %v", env.Inject, want)
	}
	if !strings.Contains(logb.String(), "APPTAINERENV_HOME is not permitted") ||
		!strings.Contains(logb.String(), "SINGULARITYENV_A is set, but APPTAINERENV_A") {
		t.Errorf("log: %s", logb.String())
	}

	env, _ = buildEnv(envInput{Host: host, Cleanenv: true, Home: "/r", Image: "/i"}, log)
	got = map[string]string{}
	for _, v := range env.Host {
		got[v.Key] = v.Value
	}
	if len(got) != 2 || got["TERM"] != "xterm" || got["LANG"] != "C" {
		t.Errorf("--cleanenv host vars: %v", env.Host)
	}
}

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "env")
	body := `# comment
export A=1
B="x $A ${HOSTV} ${NOPE:-dflt}" C='lit $A'
D=a\ b  # trailing
E="multi
line"
HOME=/ignored
A=2
F=$APPTAINER_IMAGE
export F
export HOSTV G=3
`
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := parseEnvFile(f, map[string]string{"HOSTV": "h"}, "/i.sif")
	if err != nil {
		t.Fatal(err)
	}
	want := []envVar{{Key: "A", Value: "2"}, {Key: "B", Value: "x 1 h dflt"},
		{Key: "C", Value: "lit $A"}, {Key: "D", Value: "a b"},
		{Key: "E", Value: "multi\nline"}, {Key: "F", Value: "/i.sif"}, {Key: "G", Value: "3"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	bad := []struct {
		body string
		line int
		why  string
	}{
		{"A=$(id)\n", 1, "command substitution"}, {"A=`id`\n", 1, ""},
		{"rm -rf x\n", 1, ""}, {"A='open\n", 1, ""}, {"export 1A\n", 1, ""},
		{"A=1\nrm x\nB=2\n", 2, ""}, {"A=1\nB=2\n\nrm x", 4, ""},
		{"A=\"a\nb\"\nrm\n", 3, ""},
		{"A=$((1+2))\n", 1, "arithmetic expansion is not supported"},
		{"A=1\nB=x\x00y\n", 2, "a NUL byte"},
		{"A=1\nB=\"open\n\nC=3\n", 2, "unterminated double quote"},
	}
	for _, b := range bad {
		os.WriteFile(f, []byte(b.body), 0o644)
		_, err := parseEnvFile(f, nil, "")
		if want := fmt.Sprintf(": line %d: %s", b.line, b.why); err == nil ||
			!strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", b.body, err, want)
		}
	}
}

// Tilde expansion in assignments, checked against the host's shell with
// the same HOME.
func TestEnvFileTilde(t *testing.T) {
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "env")
	body := `A=~
B=~/bin:~/x:a~b:~` + root.Username + `/y
C="~" D='~' E=\~ F=x~
G=~nosuchuser1234/z H=~:~
`
	os.WriteFile(f, []byte(body), 0o644)
	got, err := parseEnvFile(f, map[string]string{"HOME": "/h/me"}, "")
	if err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", body+`printf '%s\n' "$A" "$B" "$C" "$D" "$E" "$F" "$G" "$H"`)
	sh.Env = []string{"HOME=/h/me", "PATH=/usr/bin:/bin"}
	out, err := sh.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %v, the shell %q", got, want)
	}
	for i, v := range got {
		if v.Value != want[i] {
			t.Errorf("%s=%q, the shell says %q", v.Key, v.Value, want[i])
		}
	}
	if got[0].Value != "/h/me" || got[1].Value != "/h/me/bin:/h/me/x:a~b:"+root.HomeDir+"/y" {
		t.Errorf("A=%q B=%q", got[0].Value, got[1].Value)
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
	// An empty source is a slip, which filepath.Abs("") would turn into
	// the current directory.
	if _, err := parseBinds([]string{":/x"}); err == nil ||
		!strings.Contains(err.Error(), "no source path") {
		t.Errorf("-B :/x: %v", err)
	}
	for _, v := range []string{"/a:/proc", "/a:/dev/", "/a:/sys:ro", "/proc", "/a://dev"} {
		_, err := parseBinds([]string{v})
		if err == nil || !strings.Contains(err.Error(), "cannot bind over") {
			t.Errorf("%s: error %v", v, err)
		}
	}
	if _, err := parseBinds([]string{"/a:/dev/shm/x", "/a:/proc2"}); err != nil {
		t.Errorf("bind below /dev refused: %v", err)
	}
}

func TestEmptyOverlayRefused(t *testing.T) {
	var cli CLI
	p, err := kong.New(&cli, kong.Name("husk"), kong.Vars(helpVars), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"exec", "--overlay", "", "i.sif", "true"},
		{"exec", "-o", "", "i.sif", "true"}} {
		_, err := p.Parse(args)
		if err == nil || !strings.Contains(err.Error(), `"" is not an image path`) {
			t.Errorf("%q: error %v", args, err)
		}
	}
}

func TestEndFlagsAtImage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "i.sif", "-c", "echo hi"}, "run i.sif -- -c echo hi"},
		{[]string{"run", "-c", "i.sif"}, "run -c i.sif --"},
		{[]string{"instance", "start", "-B", "/a", "i.sif", "web", "-x"},
			"instance start -B /a i.sif web -- -x"},
		{[]string{"exec", "i.sif", "--", "ls"}, "exec i.sif -- ls"},
		{[]string{"overlay", "create", "--size", "64", "o.img"}, "overlay create --size 64 o.img"},
		{[]string{"sif", "list", "i.sif"}, "sif list i.sif"},
		// Short flags with their values attached, ending in the letter
		// of a flag that takes one (a trial: "-S/o" was taken for -o).
		{[]string{"exec", "-S/o", "i.sif", "ls"}, "exec -S/o i.sif -- ls"},
		{[]string{"exec", "-B/a:/b", "i.sif", "ls"}, "exec -B/a:/b i.sif -- ls"},
		{[]string{"exec", "-cB", "/a", "i.sif", "ls"}, "exec -cB /a i.sif -- ls"},
		{[]string{"exec", "-ce", "i.sif", "ls"}, "exec -ce i.sif -- ls"},
		{[]string{"exec", "--bind", "/a", "i.sif", "ls"}, "exec --bind /a i.sif -- ls"},
	}
	for _, c := range cases {
		var cli CLI
		p, err := newParser(&cli)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(endFlagsAtImage(p.Model.Node, c.args), " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.args, got, c.want)
		}
	}
}

// TestOnlyCommand checks that the parser built for the one command the
// arguments select (onlyCommand) parses them, fails and prints help as
// the parser of every command does.
func TestOnlyCommand(t *testing.T) {
	lines := [][]string{
		{"exec", "-B", "/a:/b", "--overlay", "o.img", "-e", "i.sif", "ls", "-l"},
		{"--debug", "run", "--contain", "i.sif", "-c", "x"},
		{"--cpuprofile", "c.prof", "shell", "--shell", "/bin/bash", "i.sif"},
		{"--memprofile=m.prof", "test", "-C", "i.sif"},
		{"instance", "start", "-B", "/x", "i.sif", "name", "arg"},
		{"instance", "list"},
		{"overlay", "create", "--size", "64", "o.img"},
		{"sif", "list", "i.sif"}, {"siftool", "list", "i.sif"},
		{"inspect", "i.sif"}, {"verify", "i.sif"}, {"version"},
		{"exec", "--help"}, {"run", "-h"}, {"instance", "start", "--help"},
		{"overlay", "create", "--help"}, {"sif", "--help"},
		{"exec", "--bogus", "i.sif", "true"}, {"exec"}, {"exec", "-B"},
		{"instance", "bogus"}, {"sif", "nothing"},
	}
	type result struct {
		cli      CLI
		out, cmd string
		err      string
	}
	parseWith := func(args []string, opts ...kong.Option) result {
		var r result
		var buf bytes.Buffer
		opts = append(opts, kong.Writers(&buf, &buf), kong.Exit(func(int) {}))
		p, err := newParser(&r.cli, opts...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		ctx, err := parseArgs(p, args)
		if err != nil {
			r.err = err.Error()
		} else {
			r.cmd = ctx.Command()
		}
		r.out = buf.String()
		return r
	}
	for _, args := range lines {
		only := onlyCommand(args)
		if len(only) == 0 {
			t.Errorf("%q: no single command selected", args)
			continue
		}
		whole, one := parseWith(args), parseWith(args, only...)
		// Only the selected command's fields and the global flags are
		// set: the whole parser also fills the others' defaults.
		var field string
		for _, a := range args {
			if f, ok := commandFields[a]; ok {
				field = f
				break
			}
		}
		pick := func(r result) []any {
			c := reflect.ValueOf(r.cli)
			return []any{r.cli.Debug, r.cli.CPUProfile, r.cli.MemProfile,
				c.FieldByName(field).Interface(), r.out, r.cmd, r.err}
		}
		if w, o := pick(whole), pick(one); !reflect.DeepEqual(w, o) {
			t.Errorf("%q:\nevery command: %+v\none command:   %+v", args, w, o)
		}
	}
	for _, args := range [][]string{{}, {"--help"}, {"-h", "exec"}, {"bogus"},
		{"--debug=true", "exec"}, {"--cpuprofile"}} {
		if only := onlyCommand(args); only != nil {
			t.Errorf("%q: selects one command, want the whole parser", args)
		}
	}
}

// The bind and mount variables add to the flags, BIND and BINDPATH both,
// as in Apptainer: a site's APPTAINER_BINDPATH had gone as soon as a user
// added -B.
func TestBindEnvAppends(t *testing.T) {
	t.Setenv("APPTAINER_BIND", "/a:/a,/b:/b")
	t.Setenv("APPTAINER_BINDPATH", "/c:/c")
	t.Setenv("SINGULARITY_BINDPATH", "/ignored:/ignored") // APPTAINER_BINDPATH is set
	t.Setenv("SINGULARITY_MOUNT", "src=/m,dst=/m")
	t.Setenv("HUSK_BIND", "/h:/h")
	cli, _ := parse(t, "exec", "-B", "/d:/d", "--mount", "src=/n,dst=/n", "i.sif", "true")
	want := []string{"/d:/d", "/h:/h", "/a:/a", "/b:/b", "/c:/c"}
	if !reflect.DeepEqual(cli.Exec.Bind, want) {
		t.Errorf("binds %q, want %q", cli.Exec.Bind, want)
	}
	if want := []string{"src=/n,dst=/n", "src=/m,dst=/m"}; !reflect.DeepEqual(cli.Exec.Mount,
		want) {
		t.Errorf("mounts %q, want %q", cli.Exec.Mount, want)
	}
	// One mount of a bind named twice: the last copy, which counts.
	cli, _ = parse(t, "exec", "-B", "/a:/a", "-B", "/x:/a", "i.sif", "true")
	want = []string{"/x:/a", "/h:/h", "/a:/a", "/b:/b", "/c:/c"}
	if !reflect.DeepEqual(cli.Exec.Bind, want) {
		t.Errorf("binds named twice %q, want %q", cli.Exec.Bind, want)
	}
	// Each once without a flag: kong's own variable for the flag is off.
	cli, _ = parse(t, "exec", "i.sif", "true")
	if want := []string{"/h:/h", "/a:/a", "/b:/b", "/c:/c"}; !reflect.DeepEqual(cli.Exec.Bind,
		want) {
		t.Errorf("binds without -B %q, want %q", cli.Exec.Bind, want)
	}
}

// TestNotForJoins: the flags a join acts on are not named; the others are,
// in their order.
func TestNotForJoins(t *testing.T) {
	got := notForJoins([]string{"debug", "bind", "env", "pwd", "fakeroot", "cleanenv",
		"cache-size", "add-caps"})
	if got != "--bind, --fakeroot, --cache-size" {
		t.Errorf("notForJoins: %q", got)
	}
	if got := notForJoins([]string{"env-file", "no-umask"}); got != "" {
		t.Errorf("notForJoins of join flags: %q", got)
	}
}

// TestParseManyArgs: the words after the command reach it all, in order,
// with their dashes, however many (kong alone parses them in the square of
// their number; parseArgs hands it the command only: BenchmarkParseManyArgs).
func TestParseManyArgs(t *testing.T) {
	words := []string{"sh", "-c", "--contain", "--", "-B"}
	for i := range 20000 {
		words = append(words, strconv.Itoa(i))
	}
	cli, cmd := parse(t, append([]string{"exec", "--pwd", "/", "img.sif"}, words...)...)
	got := stripDashes(cli.Exec.Command)
	if cmd != "exec <image> <command>" || cli.Exec.Pwd != "/" || cli.Exec.Contain ||
		!slices.Equal(got, words) {
		t.Errorf("exec: %s, pwd %q, contain %v, %d words, %q ...", cmd, cli.Exec.Pwd,
			cli.Exec.Contain, len(got), got[:min(len(got), 6)])
	}
	cli, _ = parse(t, "instance", "start", "img.sif", "web", "a", "b", "c")
	if got := stripDashes(cli.Instance.Start.Args); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("instance start args: %q", got)
	}
}

// BenchmarkParseManyArgs: `husk exec img.sif cmd` with 20,000 words, as
// xargs passes them (5 s before parseArgs kept them from kong).
func BenchmarkParseManyArgs(b *testing.B) {
	args := []string{"exec", "img.sif", "cmd"}
	for i := range 20000 {
		args = append(args, strconv.Itoa(i))
	}
	for b.Loop() {
		var cli CLI
		p, err := newParser(&cli, kong.Exit(func(int) {}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := parseArgs(p, args); err != nil {
			b.Fatal(err)
		}
	}
}
