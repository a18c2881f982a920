package ext3

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Crash safety, measured: a child process runs a random workload on an
// image through this package and is killed with SIGKILL at a random
// moment; the image is then reopened (which replays the journal),
// checked against the workload's log of synced states and closed, and
// e2fsck -fn must find nothing to fix. HUSK_CRASH_KILLS sets the number
// of kills (default 40); HUSK_CRASH_SEED repeats a run; HUSK_CRASH_DIR
// keeps the logs and the images of failed runs. The bugs it found have
// deterministic regression tests in crash_bugs_test.go.

// TestMain turns the test binary into the workload child when the crash
// test starts it with HUSK_CRASH_HELPER set.
func TestMain(m *testing.M) {
	if mode := os.Getenv(crashEnvHelper); mode != "" {
		os.Exit(crashHelperMain(mode))
	}
	os.Exit(m.Run())
}

const crashDefaultKills = 40

// crashStats counts what the crash test saw.
type crashStats struct {
	kills, cleanExits, recoverKills int
	replays                         int // kills that left a journal to replay
	fsckFailures, lostFiles, junk   int
	syncs, other                    int
}

func TestCrashKill(t *testing.T) {
	kills := crashDefaultKills
	if s := os.Getenv("HUSK_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HUSK_CRASH_KILLS=%q: want a positive number", s)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HUSK_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HUSK_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("HUSK_CRASH_SEED=%d HUSK_CRASH_KILLS=%d", seed, kills)
	rng := rand.New(rand.NewPCG(seed, 1))
	// A 1 KiB-block image with a small journal: many block groups,
	// indirect blocks early, and transactions that fill the journal.
	img := mkfsImage(t, "mkfs.ext3", 32768, "-b", "1024", "-J", "size=1")
	dir := os.Getenv("HUSK_CRASH_DIR") // keeps logs and images of failed runs
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var st crashStats
	for run := 0; st.kills < kills; run++ {
		logPath := filepath.Join(dir, fmt.Sprintf("run%d.log", run))
		os.Remove(logPath) // a log of an earlier test run with the same dir
		runSeed := rng.Uint64()
		delay := crashDelay(rng)
		killed := crashRunChild(t, img, logPath, run, runSeed, delay)
		if killed {
			st.kills++
		} else {
			st.cleanExits++
		}
		where := fmt.Sprintf("seed %d run %d (run seed %d, killed %v after %v)",
			seed, run, runSeed, killed, delay)
		crashed := crashCopy(t, img, filepath.Join(dir, "crashed.img"))
		if crashNeedsRecovery(t, crashed) {
			st.replays++
			where += ", journal to replay"
		}
		// Sometimes kill the next Open (and the replay) before the check.
		if killed && rng.IntN(6) == 0 {
			d := time.Duration(rng.IntN(4000)) * time.Microsecond
			if crashRecoverChild(t, img, d) {
				st.recoverKills++
				where += fmt.Sprintf(", recovery killed %v into Open", d)
			}
		}
		probs, m := crashCheck(t, img, logPath)
		if m != nil {
			st.syncs += m.syncs
		}
		for _, p := range probs {
			switch {
			case strings.HasPrefix(p, "e2fsck"):
				st.fsckFailures++
			case strings.HasPrefix(p, "lost"):
				st.lostFiles++
			case strings.HasPrefix(p, "file from nowhere"):
				st.junk++
			default: // open, check or close after the crash failed
				st.other++
			}
			t.Errorf("%s: %s", where, p)
		}
		if len(probs) > 0 {
			keep := filepath.Join(dir, fmt.Sprintf("run%d-crashed.img", run))
			os.Rename(crashed, keep)
			t.Logf("run %d: log at %s, image as the kill left it at %s", run, logPath, keep)
			// Repair, so that the next runs measure on their own.
			out, code := runCmdCode(t, "", "e2fsck", "-fy", img)
			if code > 2 {
				t.Fatalf("e2fsck -fy could not repair the image: exit %d\n%s", code, out)
			}
		}
	}
	t.Logf("crash: %d kills (%d left a journal to replay, %d followed by a kill in the "+
		"next Open), %d clean exits, %d fsyncs checked, %d e2fsck failures, "+
		"%d lost synced files, %d files with foreign bytes, %d failed reopens",
		st.kills, st.replays, st.recoverKills, st.cleanExits, st.syncs, st.fsckFailures,
		st.lostFiles, st.junk, st.other)
}

// crashDelay is log-uniform between 1 ms and 400 ms.
func crashDelay(rng *rand.Rand) time.Duration {
	ms := math.Exp(rng.Float64() * math.Log(400))
	return time.Duration(ms * float64(time.Millisecond))
}

func crashChild(img, logPath string, run int, seed uint64, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnvHelper+"="+mode, crashEnvImage+"="+img,
		crashEnvLog+"="+logPath, crashEnvSeed+"="+strconv.FormatUint(seed, 10),
		crashEnvRun+"="+strconv.Itoa(run))
	return cmd
}

// crashRunChild runs one workload and kills it delay after it is ready.
// It reports whether the kill happened before the workload ended.
func crashRunChild(t *testing.T, img, logPath string, run int, seed uint64,
	delay time.Duration) bool {
	t.Helper()
	cmd := crashChild(img, logPath, run, seed, "work")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
	}()
	if !<-ready {
		cmd.Wait()
		t.Fatalf("run %d: workload did not start: %s", run, stderr.String())
	}
	time.Sleep(delay)
	cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	if err != nil {
		t.Fatalf("run %d: workload failed: %v\n%s", run, err, stderr.String())
	}
	return false
}

// crashRecoverChild opens and closes img in a child killed d after it
// starts Open, so that the journal replay itself may be interrupted. It
// reports whether the kill came before the child was done.
func crashRecoverChild(t *testing.T, img string, d time.Duration) bool {
	t.Helper()
	cmd := crashChild(img, os.DevNull, 0, 0, "recover")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "opening\n" {
		cmd.Wait()
		t.Fatalf("recovery child did not start: %s", stderr.String())
	}
	time.Sleep(d)
	cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == -1 {
		return true
	}
	if err != nil {
		t.Fatalf("recovery child: %v\n%s", err, stderr.String())
	}
	return false
}

// crashCheck reopens img, checks it against the log, closes it and runs
// e2fsck -fn. It returns the problems found, each prefixed with what
// found it.
func crashCheck(t *testing.T, img, logPath string) ([]string, *crashModel) {
	t.Helper()
	m, err := parseCrashLog(logPath)
	if err != nil {
		t.Fatalf("log %s: %v", logPath, err)
	}
	if m.errLog != "" {
		t.Fatalf("run %d: workload error: %s", m.run, m.errLog)
	}
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var probs []string
	fs, err := Open(NewSection(fh, 0, st.Size()), st.Size(), Options{})
	if err != nil {
		return []string{"open after crash: " + err.Error()}, m
	}
	p, err := m.check(fs)
	if err != nil {
		probs = append(probs, "check: "+err.Error())
	}
	probs = append(probs, p...)
	if err := fs.Close(); err != nil {
		probs = append(probs, "close after crash: "+err.Error())
	}
	out, code := runCmdCode(t, "", "e2fsck", "-fn", img)
	if code != 0 {
		probs = append(probs, fmt.Sprintf("e2fsck -fn exit %d:\n%s", code, out))
	}
	return probs, m
}

// crashNeedsRecovery reports whether img has committed transactions to
// replay: a read-only Open refuses it with ErrNeedsRecovery.
func crashNeedsRecovery(t *testing.T, img string) bool {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(NewSection(fh, 0, st.Size()), st.Size(), Options{ReadOnly: true})
	if err == nil {
		f.Close()
	}
	return errors.Is(err, ErrNeedsRecovery)
}

// crashCopy copies the image as the kill left it, for the report of a
// failed run.
func crashCopy(t *testing.T, img, dst string) string {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", img, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v %s", img, err, out)
	}
	return dst
}
