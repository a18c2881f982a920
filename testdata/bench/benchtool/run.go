package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs one measured command and prints "NS RC RSS_KIB PSS_KIB" on
// stdout: the wall time from start to exit, the exit status (128+N for
// signal N) and, with -rss, the summed peak RSS (VmHWM) of its descendants
// whose executable is one of the listed files and the peak of their summed
// PSS (see rssSampler; both 0 without -rss).
//
// Timing the command from here, rather than with runuser around it, keeps
// PAM and shell start-up out of the numbers, equally for all stacks: -user
// does what runuser does for a command (uid, gid, groups, HOME, USER).
// The command gets its own process group; on SIGINT/SIGTERM, and after it
// exits, whatever is left of that group is killed, so no run leaks
// processes. A command that outlives -timeout is killed and reported with
// status 124, as timeout(1) does.
func run(args []string) error {
	fl := flag.NewFlagSet("run", flag.ContinueOnError)
	userName := fl.String("user", "", "run the command as this user")
	dir := fl.String("dir", "", "working directory (default: the user's home, or /)")
	logPath := fl.String("log", "", "append the command's stdout and stderr to this file")
	rss := fl.String("rss", "", "comma-separated executables whose peak RSS to sample")
	timeout := fl.Duration("timeout", 15*time.Minute, "kill the command after this long")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() == 0 {
		return errors.New("run: no command")
	}
	cmd := exec.Command(fl.Arg(0), fl.Args()[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "HOME=/root", "USER=root", "LOGNAME=root"}
	cmd.Dir = "/"
	if *userName != "" {
		if err := asUser(cmd, *userName); err != nil {
			return err
		}
	}
	if *dir != "" {
		cmd.Dir = *dir
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	exes, err := resolveExes(*rss)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	var sampler *rssSampler
	if len(exes) > 0 {
		sampler = startSampler(pgid, exes)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	timedOut := false
	select {
	case werr = <-waited:
	case s := <-sigs:
		killGroup(pgid)
		<-waited
		return fmt.Errorf("run: interrupted by %v, killed process group %d", s, pgid)
	case <-time.After(*timeout):
		fmt.Fprintf(cmd.Stderr, "benchtool: timed out after %v, killing group %d\n", *timeout, pgid)
		killGroup(pgid)
		werr = <-waited
		timedOut = true
	}
	elapsed := time.Since(start)
	var peak, pss int64
	if sampler != nil {
		peak, pss = sampler.stop()
	}
	// A FUSE daemon or payload that outlives the command would skew the
	// next run and leak: kill it, and say so in the log.
	if syscall.Kill(-pgid, 0) == nil {
		fmt.Fprintf(cmd.Stderr, "benchtool: processes left in group %d, killing them\n", pgid)
		killGroup(pgid)
	}
	rc := 0
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		rc = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rc = 128 + int(ws.Signal())
		}
	case werr != nil:
		return werr
	}
	if timedOut {
		rc = 124 // as timeout(1)
	}
	fmt.Println(elapsed.Nanoseconds(), rc, peak, pss)
	return nil
}

// asUser sets the credentials and login environment of name on cmd.
func asUser(cmd *exec.Cmd, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	gids, err := u.GroupIds()
	if err != nil {
		return fmt.Errorf("groups of %s: %w", name, err)
	}
	for _, g := range gids {
		n, _ := strconv.ParseUint(g, 10, 32)
		cred.Groups = append(cred.Groups, uint32(n))
	}
	cmd.SysProcAttr.Credential = cred
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
		"HOME=" + u.HomeDir, "USER=" + name, "LOGNAME=" + name}
	cmd.Dir = u.HomeDir
	return nil
}

// killGroup ends a process group: SIGTERM, then SIGKILL if it lingers.
func killGroup(pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	for i := 0; i < 40; i++ {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// resolveExes turns the -rss list into the paths /proc/PID/exe shows.
func resolveExes(list string) (map[string]bool, error) {
	exes := map[string]bool{}
	for _, e := range strings.Split(list, ",") {
		if e == "" {
			continue
		}
		p, err := exec.LookPath(e)
		if err != nil {
			return nil, fmt.Errorf("rss: %w", err)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return nil, fmt.Errorf("rss: %w", err)
		}
		if p, err = filepath.Abs(p); err != nil {
			return nil, err
		}
		exes[p] = true
	}
	return exes, nil
}
