package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An overlay is built in <dst>.husk-create-<pid>.ext3 next to dst, held
// under an exclusive flock by its creator until the overlay is in place. A
// creator killed by SIGKILL leaves the file behind; the next create, info or
// resize on dst removes it once no process holds its lock.
const tempMid, tempExt = ".husk-create-", ".ext3"

// staleGrace keeps a sweep off a temp file whose creator has just made it
// and not yet locked it.
const staleGrace = time.Minute

// createTemp makes and locks the staging file of an overlay for dst.
func createTemp(dst string) (*os.File, error) {
	p := filepath.Join(filepath.Dir(dst),
		filepath.Base(dst)+tempMid+strconv.Itoa(os.Getpid())+tempExt)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(p)
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return f, nil
}

// sweepTemps removes the staging files of creators of dst that died, and
// returns the pid of one still at work (0 if none) and the files removed.
func sweepTemps(dst string) (live int, removed []string, err error) {
	dir, base := filepath.Dir(dst), filepath.Base(dst)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		mid, ok := strings.CutPrefix(name, base+tempMid)
		if !ok || !strings.HasSuffix(mid, tempExt) || !e.Type().IsRegular() {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSuffix(mid, tempExt))
		if err != nil || pid <= 0 {
			continue
		}
		p := filepath.Join(dir, name)
		if busy, err := tempBusy(p, pid); err != nil || busy {
			if busy {
				live = pid
			}
			continue
		}
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return live, removed, nil
}

// tempBusy says whether a creator may still use the staging file p: its
// lock is held, or it is fresh and its pid runs (made but not yet locked).
func tempBusy(p string, pid int) (bool, error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK), nil
	}
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	alive := unix.Kill(pid, 0) == nil || errors.Is(unix.Kill(pid, 0), unix.EPERM)
	return alive && time.Since(st.ModTime()) < staleGrace, nil
}

// SIF header fields that bound the data (sif/v2, little endian).
const (
	sifHdrDataOff = 112
	sifAlign      = 4096 // the sif library's partition alignment
)

// trimInterrupted truncates the SIF f back to the end of its data when the
// bytes past it are provably the start of an overlay partition a killed
// create was appending: the sif library writes the data, then the
// descriptor, so such bytes are referenced by nothing. The proof is an
// ext3 superblock magic at the next 4 KiB boundary after the data, with
// only zeros before it, or nothing but zeros at all. It returns the bytes
// removed.
func trimInterrupted(f *os.File) (int64, error) {
	le := binary.LittleEndian
	h := make([]byte, 128)
	if _, err := f.ReadAt(h, 0); err != nil {
		return 0, err
	}
	end := int64(le.Uint64(h[sifHdrDataOff:])) + int64(le.Uint64(h[sifHdrDataSize:]))
	off := int64(le.Uint64(h[sifHdrDescrOff:]))
	n := int64(le.Uint64(h[sifHdrDescrN:]))
	end = max(end, off+n*sifDescrLen)
	d := make([]byte, sifDescrLen)
	for i := range n {
		if _, err := f.ReadAt(d, off+i*sifDescrLen); err != nil {
			return 0, err
		}
		if d[sifDescUsed] != 0 {
			// SizeWithPadding counts the alignment before the object.
			end = max(end, int64(le.Uint64(d[sifDescOffset:]))+
				int64(le.Uint64(d[sifDescSize:])))
		}
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	extra := st.Size() - end
	if extra <= 0 {
		return 0, nil
	}
	part := (end + sifAlign - 1) / sifAlign * sifAlign
	head := make([]byte, min(extra, part-end+2048))
	if _, err := f.ReadAt(head, end); err != nil && err != io.EOF {
		return 0, err
	}
	pad := head[:min(int64(len(head)), part-end)]
	rest := head[len(pad):]
	const magicAt = 1080
	switch {
	case !allZero(pad):
		return 0, nil
	case len(rest) >= magicAt+2 && le.Uint16(rest[magicAt:]) == 0xEF53:
	case extra <= part-end+magicAt+2 && allZero(rest):
	default:
		return 0, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	return extra, f.Sync()
}

func allZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// sweepErr is the error for a create that finds another one running.
func sweepErr(dst string, pid int) error {
	return fmt.Errorf("another 'overlay create' on %s is running (pid %d, staging file "+
		"%s%s%d%s): %w", dst, pid, filepath.Base(dst), tempMid, pid, tempExt, syscall.EBUSY)
}
