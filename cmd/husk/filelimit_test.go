package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestExplainFileLimit(t *testing.T) {
	other := &os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}
	if got := explainFileLimit(other); got != other {
		t.Errorf("another error changed: %v", got)
	}
	if explainFileLimit(nil) != nil {
		t.Error("nil is not nil")
	}
	wrapped := fmt.Errorf("sandbox: pipe: %w", syscall.EMFILE)
	got := explainFileLimit(wrapped)
	if !errors.Is(got, syscall.EMFILE) || !strings.Contains(got.Error(), "raise it with ulimit -n") {
		t.Errorf("EMFILE: %v", got)
	}
	// A stage's error reaches husk as text.
	text := errors.New("stage 1: pipe2: too many open files")
	if got := explainFileLimit(text); !strings.Contains(got.Error(), "the limit on open files is ") {
		t.Errorf("text: %v", got)
	}
}
