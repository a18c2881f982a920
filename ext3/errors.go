package ext3

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// CorruptError reports on-disk data that fails validation. The message names
// the structure and where it lives so a user can tell a damaged image from a
// husk bug: "ext3: corrupt <what> (block N / inode N): <detail>".
type CorruptError struct {
	What   string // structure, e.g. "superblock", "directory entry"
	Block  uint32 // fs block number, 0 if not applicable
	Inode  uint32 // inode number, 0 if not applicable
	Detail string
}

func (e *CorruptError) Error() string {
	where := ""
	switch {
	case e.Inode != 0 && e.Block != 0:
		where = fmt.Sprintf(" (inode %d, block %d)", e.Inode, e.Block)
	case e.Inode != 0:
		where = fmt.Sprintf(" (inode %d)", e.Inode)
	case e.Block != 0:
		where = fmt.Sprintf(" (block %d)", e.Block)
	}
	return fmt.Sprintf("ext3: corrupt %s%s: %s", e.What, where, e.Detail)
}

// Is lets errors.Is(err, syscall.EIO) hold for corruption, so callers that
// only understand errno still see an I/O error.
func (e *CorruptError) Is(target error) bool { return target == syscall.EIO }

func corrupt(what string, block, ino uint32, format string, args ...any) error {
	return &CorruptError{What: what, Block: block, Inode: ino, Detail: fmt.Sprintf(format, args...)}
}

// ErrUnsupported is wrapped by errors that refuse a feature husk does not
// implement (ext4-only features, journal on an external device, ...).
var ErrUnsupported = errors.New("ext3: unsupported feature")

// ErrNeedsRecovery is returned by a read-only Open of an image whose journal
// holds committed transactions that were never checkpointed.
var ErrNeedsRecovery = errors.New("ext3: journal needs recovery; open it writable once to replay")

// ErrClosed is returned by operations on a closed FS.
var ErrClosed = errors.New("ext3: file system is closed")

type unsupportedError struct {
	path    string
	feature string
}

func (e *unsupportedError) Error() string {
	p := ""
	if e.path != "" {
		p = e.path + " "
	}
	return fmt.Sprintf("ext3: %suses ext4 feature %s, which husk does not support", p, e.feature)
}

func (e *unsupportedError) Unwrap() error { return ErrUnsupported }

// contextError puts context (the object an error concerns) before an
// error from this package without repeating its "ext3: " prefix.
type contextError struct {
	context string
	err     error
}

func (e *contextError) Error() string {
	return "ext3: " + e.context + ": " + strings.TrimPrefix(e.err.Error(), "ext3: ")
}

func (e *contextError) Unwrap() error { return e.err }

// withContext wraps err as "ext3: <context>: <err without its prefix>".
func withContext(context string, err error) error {
	return &contextError{context: context, err: err}
}
