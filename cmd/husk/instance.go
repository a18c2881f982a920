package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/husk-project/husk/sandbox"
)

// Instances (COMPAT §8). `husk instance start` starts a detached copy of
// husk (the daemon, titled "Husk instance: <user> [<name>]") that runs the
// container with sandbox.RunInstance and writes the record once the
// startscript runs; the foreground process waits for that on a socket and
// acknowledges it, and an instance whose start was never acknowledged (the
// foreground was killed or interrupted first) is stopped again.
// Joins (`exec instance://NAME`) go through the socket in the record
// directory to the instance's stage 1.

const (
	instanceScheme = "instance://"
	// instanceTitle starts the daemon's argv[0]: `instance list` checks it
	// in /proc/<ppid>/cmdline to tell a live record from a stale one.
	instanceTitle = "Husk instance"
	// instanceFDEnv marks the daemon and names its status pipe fd.
	instanceFDEnv = "_HUSK_INSTANCE_FD"
)

var instanceName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// maxInstanceName leaves room in a file name (255 bytes) for the record's
// and the lock's suffixes, and in a socket address for the socket.
const maxInstanceName = 80

// instanceRecord is the JSON record, with Apptainer's keys; the husk key
// holds what a join needs.
type instanceRecord struct {
	Pid        int          `json:"pid"`
	PPid       int          `json:"ppid"`
	Name       string       `json:"name"`
	User       string       `json:"user"`
	Image      string       `json:"image"`
	Config     []byte       `json:"config"`
	UserNs     bool         `json:"userns"`
	Cgroup     bool         `json:"cgroup"`
	IP         string       `json:"ip"`
	LogErrPath string       `json:"logErrPath"`
	LogOutPath string       `json:"logOutPath"`
	Checkpoint string       `json:"checkpoint"`
	SharensMod bool         `json:"sharensMode"`
	Husk       instanceHusk `json:"husk"`
}

type instanceHusk struct {
	Socket  string `json:"socket"`
	Home    string `json:"home"`
	Contain bool   `json:"contain"`
	// Fakeroot: the container runs as root in its user namespace, so a
	// join may --keep-privs.
	Fakeroot bool `json:"fakeroot"`
}

// instancePaths are where an instance's files live:
// <configdir>/instances/app/<host>/<user>/<name>/<name>.json and
// <configdir>/instances/logs/<host>/<user>/<name>.{out,err}.
type instancePaths struct {
	Dir, Record, Socket, Out, Err string
}

// configDir is $HUSK_CONFIGDIR, else ~/.husk.
func configDir() (string, error) {
	if d := os.Getenv("HUSK_CONFIGDIR"); d != "" {
		return d, nil
	}
	home := ""
	if u, err := user.Current(); err == nil {
		home = u.HomeDir
	}
	if home == "" {
		home = os.Getenv("HOME")
	}
	if home == "" {
		return "", errors.New("no home directory for ~/.husk; set HUSK_CONFIGDIR")
	}
	return filepath.Join(home, ".husk"), nil
}

func userName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// instanceBase is <configdir>/instances/app/<host>/<user>.
func instanceBase() (string, error) {
	cd, err := configDir()
	if err != nil {
		return "", err
	}
	host, err := os.Hostname()
	if err != nil {
		return "", err
	}
	return filepath.Join(cd, "instances", "app", host, userName()), nil
}

func pathsFor(name string) (instancePaths, error) {
	base, err := instanceBase()
	if err != nil {
		return instancePaths{}, err
	}
	cd, _ := configDir()
	host, _ := os.Hostname()
	logs := filepath.Join(cd, "instances", "logs", host, userName())
	dir := filepath.Join(base, name)
	return instancePaths{Dir: dir, Record: filepath.Join(dir, name+".json"),
		Socket: filepath.Join(dir, name+".sock"),
		Out:    filepath.Join(logs, name+".out"), Err: filepath.Join(logs, name+".err")}, nil
}

// readRecord reads a record and reports whether its daemon still runs.
func readRecord(path string) (*instanceRecord, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	var r instanceRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, fmt.Errorf("instance record %s: %w", path, err)
	}
	return &r, daemonAlive(r.PPid) || (r.SharensMod && sharensAlive(r.PPid)), nil
}

// daemonAlive says whether pid is a husk instance daemon.
func daemonAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.HasPrefix(string(b), instanceTitle)
}

// lockStart takes the lock of starting instance ip, waiting for another
// start of the same name, and returns the function that lets it go. The
// lock file lives beside the instance's directory, which a start removes.
// The holder removes the file as it lets go, so that names once started
// leave nothing behind; a waiter that then gets the lock of a removed file
// starts over on the path's new one.
func lockStart(ip instancePaths) (func(), error) {
	base := filepath.Dir(ip.Dir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(base, "."+filepath.Base(ip.Dir)+".lock")
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if err != syscall.EINTR {
				break
			}
		}
		if err != nil {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: p, Err: err}
		}
		held, err := f.Stat()
		if err == nil {
			var now os.FileInfo
			if now, err = os.Lstat(p); err == nil && os.SameFile(held, now) {
				return func() {
					os.Remove(p)
					f.Close()
				}, nil
			}
		}
		f.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
}

// writeRecord writes the record file 0644, synced.
func writeRecord(path string, r *instanceRecord) error {
	b, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Run implements `husk instance start`.
func (c *InstanceStartCmd) Run(g *globals) error {
	if c.Boot {
		// Apptainer allows --boot to root only; husk never runs as root.
		return errors.New("Could not configure --boot: --boot requires root privileges")
	}
	if !instanceName.MatchString(c.Name) || c.Name == "." || c.Name == ".." {
		// . and .. match, but name the directories around the record.
		return fmt.Errorf("instance name %q must match %s and be neither . nor ..", c.Name,
			instanceName)
	}
	if len(c.Name) > maxInstanceName {
		return fmt.Errorf("instance name %q is longer than %d characters", c.Name,
			maxInstanceName)
	}
	ip, err := pathsFor(c.Name)
	if err != nil {
		return err
	}
	if fd := os.Getenv(instanceFDEnv); fd != "" {
		os.Unsetenv(instanceFDEnv)
		return c.daemon(g, ip, fd)
	}

	// One start of a name at a time, until the instance runs (its record
	// is written) or failed: two at once both found no record, and the
	// second removed the first one's directory, leaving an instance
	// running that no command could find.
	unlock, err := lockStart(ip)
	if err != nil {
		return err
	}
	defer unlock()
	if _, alive, err := readRecord(ip.Record); err == nil && alive {
		return fmt.Errorf("instance %s already exists", c.Name)
	}
	os.RemoveAll(ip.Dir)
	old := syscall.Umask(0)
	err = os.MkdirAll(ip.Dir, 0o700)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(ip.Out), 0o700)
	}
	syscall.Umask(old)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(ip.Out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	errf, err := os.OpenFile(ip.Err, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer errf.Close()
	// A socket, not a pipe: the daemon learns of the foreground's end
	// from it as well (see daemon).
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("starting the instance: %w", err)
	}
	pr, pw := os.NewFile(uintptr(fds[0]), "instance-status"),
		os.NewFile(uintptr(fds[1]), "instance-status")
	defer pr.Close()

	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = fmt.Sprintf("%s: %s [%s]", instanceTitle, userName(), c.Name)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), instanceFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("starting the instance: %w", err)
	}
	pw.Close()
	_ = cmd.Process.Release()

	line, _ := bufio.NewReader(pr).ReadString('\n')
	if line == "ok\n" {
		// The acknowledgement commits the start: from here on, a signal
		// no longer takes it back, so none may end this process between.
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
		if _, err := pr.Write([]byte{'k'}); err == nil {
			g.info("instance started successfully")
			return nil
		}
	}
	os.RemoveAll(ip.Dir)
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return errors.New(strings.TrimSpace(msg))
	}
	return fmt.Errorf("failed to start instance %s: see %s", c.Name, ip.Err)
}

// daemon is the detached instance process: it runs the container until
// the instance is stopped.
func (c *InstanceStartCmd) daemon(g *globals, ip instancePaths, fd string) error {
	n, err := strconv.Atoi(fd)
	if err != nil {
		return fmt.Errorf("bad %s %q", instanceFDEnv, fd)
	}
	status := os.NewFile(uintptr(n), "instance-status")
	reported := false
	// started tells the waiting `instance start` that the instance runs,
	// and stops it again unless that acknowledges: a foreground killed or
	// interrupted before it could tell the user leaves nothing running. It
	// waits in the background, as it is called from the sandbox's relay of
	// the container's messages.
	started := func(stop func()) {
		reported = true
		if _, err := io.WriteString(status, "ok\n"); err != nil {
			status.Close()
			stop()
			return
		}
		go func() {
			defer status.Close()
			var ack [1]byte
			if n, _ := status.Read(ack[:]); n == 0 {
				g.Log.Debug("instance start was not acknowledged: stopping it")
				stop()
			}
		}()
	}
	err = c.serve(g, ip, started)
	if err != nil && !reported {
		io.WriteString(status, "err "+strings.ReplaceAll(err.Error(), "\n", " ")+"\n")
		status.Close()
	}
	os.RemoveAll(ip.Dir)
	return err
}

// serve runs the instance until it stops. started reports it running and
// gets the function that stops it.
func (c *InstanceStartCmd) serve(g *globals, ip instancePaths, started func(stop func())) error {
	f := &c.ActionFlags
	f.Pid = true // instances get a PID namespace (COMPAT §8)
	action := c.action
	if action == "" {
		action = "start"
	}
	plan, spec, err := prepareAction(g, action, f, c.Image, c.Name, stripDashes(c.Args))
	if err != nil {
		return err
	}
	defer plan.Close()
	os.Remove(ip.Socket)
	lf, err := listenJoins(ip.Socket, "instance socket")
	if err != nil {
		return err
	}
	defer os.Remove(ip.Socket)
	rec := newRecord(c.Name, c.Image, ip, spec, f.Contain)
	rec.LogErrPath, rec.LogOutPath = ip.Err, ip.Out
	var werr error
	code, err := sandbox.RunInstance(context.Background(), spec, plan.Files, lf, g.Log,
		func(pid int) {
			rec.Pid = pid
			stop := func() {
				// SIGTERM to stage 2 stops an instance (RunInstance).
				syscall.Kill(pid, syscall.SIGTERM)
				if c.PidFile != "" {
					os.Remove(c.PidFile)
				}
			}
			werr = writeRecord(ip.Record, rec)
			if werr == nil && c.PidFile != "" {
				werr = os.WriteFile(c.PidFile, fmt.Appendf(nil, "%d\n", pid), 0o644)
			}
			if werr != nil {
				stop()
				return
			}
			started(stop)
		})
	lf.Close()
	if err == nil && werr != nil {
		err = werr
	}
	g.Code = code
	return setupError(err)
}

// joinInstance runs an action in a running instance.
func joinInstance(g *globals, command string, f *ActionFlags, name string,
	args []string) error {
	ip, err := pathsFor(name)
	if err != nil {
		return err
	}
	rec, alive, err := readRecord(ip.Record)
	if err != nil || !alive {
		return fmt.Errorf("no instance found with name %s", name)
	}
	// The environment's part of --compat and --containall applies to the
	// command, as when they start a container; the rest is the instance's.
	if f.Compat {
		f.NoUmask, f.NoEval = true, true
	}
	if f.Compat || f.Containall {
		f.Cleanenv = true
	}
	if f.KeepPrivs && !rec.Husk.Fakeroot {
		return errKeepPrivs
	}
	if ignored := notForJoins(g.Given); len(ignored) > 0 {
		g.Log.Warn(fmt.Sprintf("%s%s is already running; ignoring %s (they apply "+
			"when a container starts)", instanceScheme, name, ignored))
	}
	argv, env, err := actionProcess(g, command, f, instanceScheme+name, rec.Image,
		rec.Husk.Home, name, args)
	if err != nil {
		return err
	}
	req := sandbox.JoinRequest{Args: argv, Env: env, Umask: umask(f.NoUmask)}
	if f.AddCaps != "" || f.DropCaps != "" || f.NoPrivs {
		caps := capsFrom(&f.SecurityFlags, g.Log)
		req.Caps = &caps
	}
	switch {
	case f.Pwd != "":
		req.Cwd, req.CwdExplicit = f.Pwd, true
	case !rec.Husk.Contain:
		req.Cwd, _ = os.Getwd()
	}
	code, err := sandbox.Join(context.Background(), rec.Husk.Socket, req, g.Log)
	if err != nil {
		return err
	}
	g.Code = code
	return nil
}

// joinFlags are the flags a command joining an instance acts on: its
// environment, working directory, umask, app, shell and capabilities, and
// husk's own. The others shape the container, which the instance made.
var joinFlags = map[string]bool{
	"help": true, "debug": true, "cpuprofile": true, "memprofile": true,
	"cleanenv": true, "env": true, "env-file": true, "no-env": true,
	"no-eval": true, "no-umask": true, "pwd": true, "app": true, "shell": true,
	"add-caps": true, "drop-caps": true, "no-privs": true, "keep-privs": true,
	// Their environment parts (joinInstance).
	"compat": true, "containall": true,
	// No effect anywhere in husk.
	"userns": true, "no-init": true,
}

// notForJoins lists the flags of given that a join does not act on, as
// "--bind, --fakeroot".
func notForJoins(given []string) string {
	var names []string
	for _, n := range given {
		if !joinFlags[n] {
			names = append(names, "--"+n)
		}
	}
	return strings.Join(names, ", ")
}

// listenJoins listens on the unix socket path for commands joining a
// container and returns the listening socket as a file for stage 1, which
// accepts on it; what names the socket in errors. The caller removes path
// when the container is gone.
func listenJoins(path, what string) (*os.File, error) {
	addr, done, err := sandbox.SocketPath(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// The file is a dup; the listener's own fd is not needed after it.
	defer l.Close()
	l.SetUnlinkOnClose(false)
	return l.File()
}

// newRecord is the record of a container that this process serves and
// others join: an instance, or the first command of a --sharens group.
func newRecord(name, image string, ip instancePaths, spec *sandbox.Spec,
	contain bool) *instanceRecord {
	absImage, _ := filepath.Abs(image)
	return &instanceRecord{PPid: os.Getpid(), Name: name, User: userName(),
		Image: absImage, UserNs: true,
		Husk: instanceHusk{Socket: ip.Socket, Home: spec.ContainerHome(),
			Contain: contain, Fakeroot: spec.Fakeroot}}
}
