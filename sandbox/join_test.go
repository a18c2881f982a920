// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first Accepts (as with no descriptor left),
// then reports itself closed.
type flakyListener struct {
	net.Listener
	calls, fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= l.fails.Load() {
		return nil, &net.OpError{Op: "accept", Err: syscall.EMFILE}
	}
	return nil, net.ErrClosed
}

// TestJoinAcceptRetries: an instance whose accept fails (no descriptor
// left, say) goes on accepting joins; only a closed listener ends it.
func TestJoinAcceptRetries(t *testing.T) {
	l := &flakyListener{}
	l.fails.Store(2)
	js := &joinServer{st: &stage1State{log: slog.New(slog.DiscardHandler)}, l: l}
	done := make(chan struct{})
	go func() { js.accept(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("accept did not end on a closed listener")
	}
	if n := l.calls.Load(); n != 3 {
		t.Errorf("%d accepts, want 3 (two failed, then closed)", n)
	}
}

// TestJoinGivesUp: a joining client whose instance never answers ends on
// SIGTERM (after joinAnswer) with 128+15, instead of waiting for ever.
func TestJoinGivesUp(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // and never answer
		}
	}()
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := Join(context.Background(), sock, JoinRequest{Args: []string{"true"}}, nil)
		res <- result{code, err}
	}()
	var c net.Conn
	select {
	case c = <-accepted: // Join has its signals by now
	case <-time.After(10 * time.Second):
		t.Fatal("Join did not connect")
	}
	defer c.Close()
	start := time.Now()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.code != 128+int(syscall.SIGTERM) || r.err == nil {
			t.Errorf("Join: %d, %v; want %d and an error", r.code, r.err,
				128+int(syscall.SIGTERM))
		}
		if d := time.Since(start); d < joinAnswer/2 {
			t.Errorf("gave up after %v, before waiting for an answer", d)
		}
	case <-time.After(joinAnswer + 10*time.Second):
		t.Fatal("Join still waits for an instance that never answers")
	}
}
