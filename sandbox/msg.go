// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The stages cannot print: only cmd decides how messages look. They send
// log records and their fatal error to stage 0 on an inherited pipe, one
// JSON object per line, and stage 0 replays them into the caller's logger.
// A line is one write(2); lines under PIPE_BUF (4 KiB) from stage 1 and
// stage 2 cannot interleave.

// record is one line on the log pipe.
type record struct {
	Level slog.Level `json:"l"`
	Msg   string     `json:"m"`
	// Attrs alternate keys and values, formatted as text.
	Attrs []string `json:"a,omitempty"`
	// Fatal marks the error that ends the stage before the payload runs.
	Fatal bool `json:"f,omitempty"`
	// Errno is the fatal error's errno, if it has one: stage 0 tells an
	// I/O error from other failures by it, not by the text.
	Errno syscall.Errno `json:"e,omitempty"`
	// Fault is an image fault the Mounter reported (ReportImageFault).
	Fault *imageFault `json:"i,omitempty"`
	// Started is sent by stage 2 once the payload runs.
	Started bool `json:"s,omitempty"`
	// Pid is sent by stage 1 of an instance: the host pid of its stage 2.
	Pid int `json:"p,omitempty"`
	// Exit ends a join's stream: the joined payload's status.
	Exit *int `json:"x,omitempty"`
	// Signal is sent by stage 2 when a signal killed the payload: its
	// status, 128+N, is then not an exit code the payload chose.
	Signal syscall.Signal `json:"k,omitempty"`
	// T is when the record was made, on the monotonic clock (which all
	// processes share), so that stage 0 can show when each step happened.
	T int64 `json:"t,omitempty"`
}

// The debug log shows every step's time since husk started ("t=12.3ms"),
// for the stages too: start-up cost is visible without a profiler.

// started is when this process (stage 0) initialised the sandbox package,
// on the monotonic clock; in a stage it is unused.
var started = monotonic()

// monotonic reads CLOCK_MONOTONIC in nanoseconds. Unlike time.Now's
// monotonic reading it can be compared across processes.
func monotonic() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// Elapsed is the time since husk started (since this package was
// initialised), on the clock the stages stamp their log records with.
func Elapsed() time.Duration { return time.Duration(monotonic() - started) }

// ElapsedKey is the attribute that carries [Elapsed] on debug records
// relayed from the stages.
const ElapsedKey = "t"

// FormatElapsed formats d as ElapsedKey's value: milliseconds, 0.1 ms
// precision.
func FormatElapsed(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// pipeHandler is a slog.Handler writing records to the log pipe.
type pipeHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level *slog.LevelVar // shared with the handlers made by WithAttrs
	attrs []string
}

// newPipeHandler makes the stage's handler; a stage has one, and
// ReportImageFault writes to the last one made.
func newPipeHandler(w io.Writer, level slog.Level) *pipeHandler {
	h := &pipeHandler{mu: new(sync.Mutex), w: w, level: new(slog.LevelVar)}
	h.level.Set(level)
	stagePipe.Store(h)
	return h
}

func (h *pipeHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *pipeHandler) Handle(_ context.Context, r slog.Record) error {
	rec := record{Level: r.Level, Msg: r.Message, Attrs: h.attrs, T: monotonic()}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs = append(rec.Attrs, a.Key, clip(a.Value.String()))
		return true
	})
	return h.send(rec)
}

// maxAttr bounds an attribute value so that a record stays one atomic
// pipe write (PIPE_BUF) with a few attributes.
const maxAttr = 512

func clip(v string) string {
	if len(v) <= maxAttr {
		return v
	}
	return v[:maxAttr] + "..."
}

func (h *pipeHandler) send(rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.w.Write(append(b, '\n'))
	return err
}

func (h *pipeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]string(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = append(h2.attrs, a.Key, a.Value.String())
	}
	return &h2
}

// WithGroup is not needed by the stages; groups are flattened away.
func (h *pipeHandler) WithGroup(string) slog.Handler { return h }

// fatal sends the error that ends the stage.
func (h *pipeHandler) fatal(err error) {
	rec := record{Level: slog.LevelError, Msg: err.Error(), Fatal: true}
	errors.As(err, &rec.Errno)
	_ = h.send(rec)
}

// started tells stage 0 that the payload runs: from then on a failing
// stage is no longer a setup failure.
func (h *pipeHandler) started() {
	_ = h.send(record{Level: slog.LevelDebug, Started: true})
}

// killed tells stage 0 that signal sig killed the payload.
func (h *pipeHandler) killed(sig syscall.Signal) {
	_ = h.send(record{Level: slog.LevelDebug, Signal: sig})
}

// relayed is what the stages reported.
type relayed struct {
	fatal   error          // the first fatal error, an *ImageError when one applies
	fault   *imageFault    // the first image fault
	started bool           // the payload was started
	pid     int            // an instance's stage 2 pid
	exit    *int           // a join's status
	signal  syscall.Signal // the signal that killed the payload, if one did
}

// status is the payload's status as Run and Join return it: -N when
// signal N killed it, else the exit code status (which may be 128+N for a
// payload that chose it).
func (r relayed) status(status int) int {
	if r.signal > 0 && status == 128+int(r.signal) {
		return -int(r.signal)
	}
	return status
}

// relay reads the log pipe until every writer has closed it and replays
// the records into log.
func relay(r io.Reader, log *slog.Logger) relayed {
	return relayRecords(r, log, nil, false)
}

// relayNotify is relay calling onStart (when not nil) with the instance's
// stage 2 pid once the payload runs.
func relayNotify(r io.Reader, log *slog.Logger, onStart func(pid int)) relayed {
	return relayRecords(r, log, onStart, true)
}

// relayRecords is relay and relayNotify. A stage's image fault is printed
// as a warning here; with hold (where the payload's start is relayed too),
// a fault met before the payload started is held back until it does: a
// setup that fails on it names it in its fatal error, once.
func relayRecords(r io.Reader, log *slog.Logger, onStart func(pid int), hold bool) relayed {
	var res relayed
	var held *imageFault
	// The union's own warning, which it left to stage 0 (see
	// ReportImageFault), in its words.
	warn := func(f *imageFault) {
		log.Warn("fusefs: layer error", "err", f.Problem, "image", f.Image)
	}
	defer func() {
		var ie *ImageError
		if held != nil && !errors.As(res.fatal, &ie) {
			warn(held)
		}
	}()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			log.Warn("sandbox: bad message from a stage", "line", sc.Text())
			continue
		}
		if rec.Pid != 0 {
			res.pid = rec.Pid
			continue
		}
		if rec.Exit != nil {
			res.exit = rec.Exit
			continue
		}
		if rec.Signal != 0 {
			res.signal = rec.Signal
			continue
		}
		if rec.Started {
			if held != nil {
				warn(held)
				held = nil
			}
			res.started = true
			startupOver(log)
			if onStart != nil {
				onStart(res.pid)
			}
			continue
		}
		if rec.Fault != nil {
			if res.fault == nil {
				res.fault = rec.Fault
			}
			log.Debug("image fault", "image", rec.Fault.Image, "problem", rec.Fault.Problem)
			if hold && !res.started {
				held = rec.Fault
			} else {
				warn(rec.Fault)
			}
			continue
		}
		if rec.Fatal {
			if res.fatal == nil {
				res.fatal = stageFailure(rec, res.fault)
			}
			log.Debug("stage failed", "error", rec.Msg)
			continue
		}
		args := make([]any, 0, len(rec.Attrs)+2)
		for _, a := range rec.Attrs {
			args = append(args, a)
		}
		if rec.T != 0 {
			args = append(args, ElapsedKey, FormatElapsed(time.Duration(rec.T-started)))
		}
		log.Log(context.Background(), rec.Level, rec.Msg, args...)
	}
	return res
}

// A corrupt image fails the container's setup far from where the damage
// is found: the FUSE server in stage 1 reads a bad block, the kernel gets
// EIO, and the stage's lstat or exec fails with a bare "input/output
// error". The Mounter, which knows the image, reports the fault on the
// log pipe before the kernel sees the EIO; the pipe keeps that order, so
// stage 0 has the fault when the fatal error arrives and can name the
// image in it.

// ImageError is a setup failure traced to a damaged image: a stage failed
// with an I/O error after the layer reading Image reported Problem.
type ImageError struct {
	Image   string // the image file, and partition, as the Mounter named it
	Problem string // what the layer found wrong (a corrupt block, a read error)
	Err     error  // the stage's failure, an I/O error of some setup step
}

// Error implements error as "<image>: <problem> (<stage failure>)".
func (e *ImageError) Error() string {
	return e.Image + ": " + e.Problem + " (" + e.Err.Error() + ")"
}

// Unwrap returns the stage's failure, which wraps its errno (EIO).
func (e *ImageError) Unwrap() error { return e.Err }

// imageFault is the Fault of a record.
type imageFault struct {
	Image   string `json:"i"`
	Problem string `json:"p"`
}

// stagePipe is this stage process's pipe handler, nil outside a stage;
// faultSent says that ReportImageFault has sent its one record.
var (
	stagePipe atomic.Pointer[pipeHandler]
	faultSent atomic.Bool
)

// ReportImageFault is for the Mounter's layers in stage 1: it tells stage
// 0 that the layer reading image failed with problem, which is not a
// POSIX condition (the FUSE server answers EIO for it). Call it before the
// kernel gets the EIO. Only the first fault of a process is sent: it is
// the one that fails the setup, and a payload reading a damaged file over
// and over must not flood the pipe. Outside a stage it does nothing.
//
// It reports whether stage 0 took the fault: then stage 0 tells the user,
// once (in the fatal error when the setup fails on it, else as a warning),
// and the caller should not print it too. Later faults, and any after
// stage 0 is gone (an instance's), are the caller's to print.
func ReportImageFault(image string, problem error) bool {
	h := stagePipe.Load()
	if h == nil || problem == nil || !faultSent.CompareAndSwap(false, true) {
		return false
	}
	return h.send(record{Level: slog.LevelDebug,
		Fault: &imageFault{Image: clip(image), Problem: clip(problem.Error())}}) == nil
}

// stageError is an error that crossed a process boundary (a stage's fatal
// error as stage 0 gets it, an error of stage 3's Mounter): its text, and
// its errno so that errors.Is works.
type stageError struct {
	msg   string
	errno syscall.Errno
}

func (e *stageError) Error() string { return e.msg }

func (e *stageError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// stageFailure makes the error of a fatal record: an *ImageError when the
// stage failed with EIO after an image fault, else a *stageError.
func stageFailure(rec record, fault *imageFault) error {
	return withImageFault(&stageError{msg: rec.Msg, errno: rec.Errno}, fault)
}

// withImageFault makes err, a stage's failure, an *ImageError when it is
// an I/O error and fault is not nil. The fault may come from another
// stage's relay (a union served by another process than the one that
// failed), read to its end.
func withImageFault(err error, fault *imageFault) error {
	var ie *ImageError
	if fault == nil || !errors.Is(err, syscall.EIO) || errors.As(err, &ie) {
		return err
	}
	return &ImageError{Image: fault.Image, Problem: fault.Problem, Err: err}
}
