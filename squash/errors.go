// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"errors"
	"fmt"
	"syscall"
)

// FormatError reports corrupt or unsupported on-disk data. Offset is relative
// to the start of the squashfs section, or -1 when no single offset applies.
type FormatError struct {
	Offset int64  // byte offset inside the squashfs section, or -1
	What   string // the record being read, e.g. "inode 12", "superblock"
	Err    error  // the cause
}

// Error implements error as "squash: <What> at offset N: <err>", or
// "squash: <What>: <err>" when no offset applies.
func (e *FormatError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("squash: %s: %v", e.What, e.Err)
	}
	return fmt.Sprintf("squash: %s at offset %d: %v", e.What, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *FormatError) Unwrap() error { return e.Err }

// Sentinel causes carried inside a [FormatError].
var (
	// ErrCorrupt is the cause when on-disk data is inconsistent.
	ErrCorrupt = errors.New("corrupt data")
	// ErrUnsupported is the cause when the image uses a feature this
	// package does not implement; the message names the feature.
	ErrUnsupported = errors.New("unsupported feature")
)

// formatErr builds a *FormatError whose cause wraps ErrCorrupt with detail.
func formatErr(off int64, what, format string, args ...any) error {
	return &FormatError{Offset: off, What: what,
		Err: fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))}
}

// unsupportedErr builds a *FormatError whose cause wraps ErrUnsupported.
func unsupportedErr(off int64, what, format string, args ...any) error {
	return &FormatError{Offset: off, What: what,
		Err: fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))}
}

// wrapFormat wraps err as a *FormatError unless it already is one.
func wrapFormat(off int64, what string, err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	return &FormatError{Offset: off, What: what, Err: err}
}

// annotate prefixes the What of a *FormatError with the object it
// concerns (an inode), computed only when there is an error.
func annotate(err error, format string, args ...any) error {
	fe, ok := err.(*FormatError)
	if !ok {
		return err
	}
	c := *fe
	c.What = fmt.Sprintf(format, args...) + " " + fe.What
	return &c
}

// errnoError is a POSIX condition that matches both a syscall.Errno and,
// where one exists, the io/fs sentinel (fs.ErrNotExist for ENOENT).
type errnoError struct {
	op    string
	name  string
	errno syscall.Errno
}

func (e *errnoError) Error() string {
	return fmt.Sprintf("squash: %s %q: %v", e.op, e.name, e.errno)
}

// Unwrap returns the errno so errors.Is(err, syscall.ENOENT) holds.
func (e *errnoError) Unwrap() error { return e.errno }
