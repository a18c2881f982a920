// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main runs the namespace stages. Call it first thing in main, before
// flags are parsed: it returns at once in the husk process the user
// started, and never returns in a stage process (a re-execution of this
// binary by [Run]). m builds the union in stage 1; stage 2 ignores it.
//
// Each hook runs first thing in a stage process, before the stage reads
// its plan (while the host's file system is still visible to stage 2);
// the function it returns, if not nil, runs when the stage is done, just
// before it exits. cmd/husk profiles the stages with one.
func Main(m Mounter, hooks ...StageHook) {
	stage := os.Getenv(stageEnv)
	if stage == "" {
		return
	}
	switch stage {
	case seccompStage:
		os.Exit(seccompExec()) // the payload's seccomp shim: seccompprofile_linux.go
	case chrootStage:
		os.Exit(chrootExec()) // an in-container --fusemount program: fusemount_linux.go
	case guardStage:
		os.Exit(guardMain()) // stage 1's guard: guard_linux.go
	}
	// Install the handlers before anything else: stage 0 may forward a
	// signal as soon as this process exists.
	fw := startForwarding()
	fds := os.Getenv(specFDEnv)
	unshare := os.Getenv(unshareEnv) != ""
	os.Unsetenv(stageEnv)
	os.Unsetenv(specFDEnv)
	os.Unsetenv(unshareEnv)
	if stage == "1" {
		// First: with --fakeroot's subordinate ids this re-executes.
		if err := awaitIDMap(fds); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(setupFailed)
		}
	}
	// The kernel names a process after the file it executed, and stages
	// run /proc/self/exe: without this, ps and top list them as "exe".
	// /proc/self/comm is the thread group leader's name, whichever thread
	// writes it. The name also tells the parent stage that this one
	// catches signals and will not re-execute (stageReady).
	_ = os.WriteFile("/proc/self/comm", []byte("husk-stage"+stage), 0)

	var done []func()
	n, _ := strconv.Atoi(stage)
	for _, h := range hooks {
		if d := h(n); d != nil {
			done = append(done, d)
		}
	}
	var code int
	switch stage {
	case "1":
		code = stage1(m, fw, fds)
	case "2":
		code = stage2(fw, fds, unshare)
	case "3":
		code = serve(m, fw, fds) // fusermount3 mode: hostserve_linux.go
	default:
		fmt.Fprintf(os.Stderr, "%v: unknown stage %q\n", errStage, stage)
		code = setupFailed
	}
	for i := len(done) - 1; i >= 0; i-- {
		done[i]()
	}
	os.Exit(code)
}

// StageHook is called by [Main] in a stage process with the stage's
// number (1: the FUSE server and supervisor of the container, 2: the
// payload's reaper inside it, 3: the FUSE server in the host's
// namespaces when the union is mounted through fusermount3). The
// function it returns runs when the stage ends.
type StageHook func(stage int) (done func())

// stageIO is what a stage inherited from its parent.
type stageIO struct {
	files []*os.File // image files, fds 3..
	log   *slog.Logger
	h     *pipeHandler
	logW  *os.File
	plan  *plan
	// listen is an instance's socket for joins (nil otherwise).
	listen *os.File
}

// openStage picks up the inherited fds, marks them close-on-exec so they
// do not leak into the next stage or the payload, and reads the plan.
func openStage(stage int, fds string) (*stageIO, error) {
	var nums []int
	for _, f := range strings.Split(fds, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%w: fds %q", errStage, fds)
		}
		nums = append(nums, n)
	}
	if len(nums) < 2 || len(nums) > 3 || nums[0] < 3 {
		return nil, fmt.Errorf("%w: fds %q", errStage, fds)
	}
	specFD, logFD := nums[0], nums[1]
	closeExtraFDsOnExec()
	s := &stageIO{logW: os.NewFile(uintptr(logFD), "log-pipe")}
	if len(nums) == 3 {
		s.listen = os.NewFile(uintptr(nums[2]), "join-socket")
	}
	for fd := 3; fd < specFD; fd++ {
		s.files = append(s.files, os.NewFile(uintptr(fd), fmt.Sprintf("image-%d", fd-3)))
	}
	// Until the plan says otherwise, only errors go through.
	s.h = newPipeHandler(s.logW, slog.LevelWarn)
	s.log = slog.New(s.h).With("stage", stage)

	specR := os.NewFile(uintptr(specFD), "spec-pipe")
	defer specR.Close()
	if err := json.NewDecoder(bufio.NewReader(specR)).Decode(&s.plan); err != nil {
		return s, fmt.Errorf("%w: reading the spec: %v", errStage, err)
	}
	if s.plan.Spec == nil {
		return s, fmt.Errorf("%w: no spec", errStage)
	}
	if s.plan.Spec.Debug {
		s.h.level.Set(slog.LevelDebug)
	}
	return s, nil
}

// closeExtraFDsOnExec marks every fd above stderr close-on-exec. The
// stages pass what the next one needs explicitly, the caller's own
// descriptors included (inherit_linux.go).
func closeExtraFDsOnExec() {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return
	}
	// Before Linux 5.11.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// fail reports err to stage 0 as the run's error and returns the setup
// failure status.
func (s *stageIO) fail(err error) int {
	if s == nil || s.h == nil {
		fmt.Fprintln(os.Stderr, err)
		return setupFailed
	}
	s.h.fatal(err)
	return setupFailed
}

// logIDs traces the process's ids and capabilities after a namespace
// step, as Charliecloud's LOG_IDS does.
func logIDs(log *slog.Logger, step string) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return // do not read /proc for nothing
	}
	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	capEff := ""
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				capEff = strings.TrimSpace(v)
			}
		}
	}
	log.Debug("ids", "step", step,
		"uids", fmt.Sprintf("%d,%d,%d", ruid, euid, suid),
		"gids", fmt.Sprintf("%d,%d,%d", rgid, egid, sgid),
		"capeff", capEff, "pid", os.Getpid())
}
