package ext3

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Fallocate modes (unix.FALLOC_FL_*).
const (
	fallocKeepSize  = 0x1
	fallocPunchHole = 0x2
	fallocZeroRange = 0x10
)

// maxFileSize is the largest size a block-mapped file can have: the map's
// reach, capped so i_blocks (512-byte units, 32 bits without huge_file)
// cannot overflow.
func (f *FS) maxFileSize() uint64 {
	m := f.maxBlocks() * uint64(f.bs)
	if lim := uint64(1)<<32*512 - uint64(f.bs); m > lim {
		m = lim
	}
	return m
}

func now() Timespec {
	t := time.Now()
	return Timespec{Sec: t.Unix(), Nsec: uint32(t.Nanosecond())}
}

// mapRun returns the physical block of lblk and how many following
// logical blocks (up to max) map to consecutive physical blocks; phys 0
// means a hole run of that length.
// Preconditions: in.mu held.
func (f *FS) mapRun(in *inode, lblk uint64, max int) (uint32, int, error) {
	p, err := f.bmap(in, lblk)
	if err != nil {
		return 0, 0, err
	}
	n := 1
	if p == 0 {
		// Skip missing indirect subtrees at once: sparse files can have
		// holes of millions of blocks.
		for n < max {
			q, err := f.bmap(in, lblk+uint64(n))
			if err != nil {
				return 0, 0, err
			}
			if q != 0 {
				break
			}
			n += int(min(f.holeSpan(in, lblk+uint64(n)), uint64(max-n)))
		}
		return 0, n, nil
	}
	for n < max {
		q, err := f.bmap(in, lblk+uint64(n))
		if err != nil {
			return 0, 0, err
		}
		if (p == 0 && q != 0) || (p != 0 && q != p+uint32(n)) {
			break
		}
		n++
	}
	return p, n, nil
}

// fileRLocked returns regular file ino read-locked, and the function that
// unlocks and releases it: EISDIR for a directory, EINVAL for anything
// else that is not a regular file.
func (f *FS) fileRLocked(ino uint32) (*inode, func(), error) {
	in, err := f.iget(ino)
	if err != nil {
		return nil, nil, err
	}
	in.mu.RLock()
	err = nil
	if in.isDir() {
		err = syscall.EISDIR
	} else if !in.isReg() {
		err = syscall.EINVAL
	}
	done := func() {
		in.mu.RUnlock()
		f.iput(in)
	}
	if err != nil {
		done()
		return nil, nil, err
	}
	return in, done, nil
}

// ReadAt reads file data at off. Like io.ReaderAt it returns io.EOF when
// fewer than len(p) bytes are available. Holes read as zeros.
func (f *FS) ReadAt(ino uint32, p []byte, off int64) (int, error) {
	in, release, err := f.fileRLocked(ino)
	if err != nil {
		return 0, err
	}
	defer release()
	if off < 0 {
		return 0, syscall.EINVAL
	}
	size := int64(in.size())
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > size-off {
		want = p[:size-off]
	}
	bs := int64(f.bs)
	done := 0
	for done < len(want) {
		pos := off + int64(done)
		lblk, boff := uint64(pos/bs), pos%bs
		nblk := int((boff + int64(len(want)-done) + bs - 1) / bs)
		phys, run, err := f.mapRun(in, lblk, nblk)
		if err != nil {
			return done, err
		}
		n := min(int64(run)*bs-boff, int64(len(want)-done))
		chunk := want[done : done+int(n)]
		if phys == 0 {
			clear(chunk)
		} else if _, err := f.dev.ReadAt(chunk, int64(phys)*bs+boff); err != nil {
			return done, err
		}
		done += int(n)
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// WriteAt writes file data at off, allocating blocks for holes. Data goes
// straight to the device; the block map changes join the running
// transaction. Owner root may use the reserved blocks unless
// Options.NoReserve (the package has no caller credentials, so the file
// owner stands in for the caller).
func (f *FS) WriteAt(ino uint32, p []byte, off int64) (int, error) {
	n, err := f.writeAt(ino, p, off)
	if errors.Is(err, syscall.ENOSPC) && n < len(p) && atomic.LoadInt64(&f.pendingFrees) > 0 {
		// Space freed by the running transaction becomes usable once it
		// commits (see retryNoSpace).
		if f.commit() == nil {
			m, err := f.writeAt(ino, p[n:], off+int64(n))
			return n + m, err
		}
	}
	return n, err
}

func (f *FS) writeAt(ino uint32, p []byte, off int64) (int, error) {
	if err := f.begin(); err != nil {
		return 0, err
	}
	defer f.end()
	in, err := f.iget(ino)
	if err != nil {
		return 0, err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.isDir() {
		return 0, syscall.EISDIR
	}
	if !in.isReg() || off < 0 {
		return 0, syscall.EINVAL
	}
	if uint64(off)+uint64(len(p)) > f.maxFileSize() {
		return 0, syscall.EFBIG
	}
	if size := in.size(); uint64(off) > size {
		if err := f.zeroTail(in, size, uint64(off)); err != nil {
			return 0, err
		}
	}
	n, werr := f.writeLocked(in, p, off)
	if n > 0 {
		if end := uint64(off) + uint64(n); end > in.size() {
			in.setSize(end)
			f.noteLargeFile(end)
		}
		t := now()
		in.setTime(tsMtime, t)
		in.setTime(tsCtime, t)
	}
	if err := f.writeInode(in); err != nil && werr == nil {
		werr = err
	}
	return n, werr
}

// writeLocked writes p at off, allocating holes in runs.
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) writeLocked(in *inode, p []byte, off int64) (int, error) {
	bs := int64(f.bs)
	root := f.mayUseReserve(in)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		lblk, boff := uint64(pos/bs), pos%bs
		nblk := int((boff + int64(len(p)-done) + bs - 1) / bs)
		phys, run, fresh, err := f.bmapAlloc(in, lblk, nblk, root)
		if err != nil {
			return done, err
		}
		if !fresh {
			// Extend over already mapped, physically contiguous blocks.
			_, more, err := f.mapRun(in, lblk, nblk)
			if err == nil {
				run = more
			}
		}
		n := min(int64(run)*bs-boff, int64(len(p)-done))
		chunk := p[done : done+int(n)]
		var pad *[]byte
		if fresh && (boff != 0 || (boff+n)%bs != 0) {
			// New blocks hold garbage: pad the write to whole blocks.
			pad = getPad(int((boff + n + bs - 1) / bs * bs))
			whole := *pad
			clear(whole[:boff])
			copy(whole[boff:], chunk)
			clear(whole[boff+n:])
			chunk, boff = whole, 0
		}
		_, err = f.dev.WriteAt(chunk, int64(phys)*bs+boff)
		putPad(pad)
		if err != nil {
			if fresh {
				// The size will not cover the new blocks (they hold
				// garbage): unmap them again, or e2fsck finds blocks
				// past the end of the file.
				f.freeRange(in, lblk, lblk+uint64(run))
			}
			return done, err
		}
		f.noteWritten(in, int64(phys)*bs+boff, int64(len(chunk)))
		done += int(n)
	}
	return done, nil
}

// padPool holds buffers for padding writes into new blocks: small
// unaligned writes (tar writes 10 KiB records) would otherwise allocate
// one per call.
var padPool sync.Pool

// padPoolMax is the largest padding buffer kept in padPool.
const padPoolMax = 256 << 10

// getPad returns a buffer of n bytes, pooled when n is small; its
// contents are garbage.
func getPad(n int) *[]byte {
	if n <= padPoolMax {
		if p, ok := padPool.Get().(*[]byte); ok {
			*p = (*p)[:n]
			return p
		}
		b := make([]byte, n, padPoolMax)
		return &b
	}
	b := make([]byte, n)
	return &b
}

// putPad returns a buffer from getPad (or nil) to the pool.
func putPad(p *[]byte) {
	if p != nil && cap(*p) == padPoolMax {
		padPool.Put(p)
	}
}

// noteLargeFile sets the large_file feature once a file passes 2 GiB, as
// the kernel does.
func (f *FS) noteLargeFile(size uint64) {
	if size <= 1<<31-1 {
		return
	}
	f.sbMu.Lock()
	if f.sb.FeatureROCompat&roCompatLargeFile == 0 {
		f.sb.FeatureROCompat |= roCompatLargeFile
		f.sbDirty = true
	}
	f.sbMu.Unlock()
}

// zeroBlock is made on first use: a package variable would be allocated in
// every husk process (each of its stages) and bring its first GC closer.
var zeroBlock = sync.OnceValue(func() []byte { return make([]byte, 1<<20) })

// zeroRange writes zeros to [off, off+n) of the file, allocating holes.
func (f *FS) zeroRange(in *inode, off, n int64) error {
	for n > 0 {
		c := min(n, int64(len(zeroBlock())))
		if _, err := f.writeLocked(in, zeroBlock()[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// zeroMapped writes zeros to [off, off+n) where blocks are mapped, within
// one block; holes stay holes.
func (f *FS) zeroMapped(in *inode, off, n int64) error {
	if n <= 0 {
		return nil
	}
	p, err := f.bmap(in, uint64(off/int64(f.bs)))
	if err != nil || p == 0 {
		return err
	}
	_, err = f.dev.WriteAt(zeroBlock()[:n], int64(p)*int64(f.bs)+off%int64(f.bs))
	return err
}

// zeroTail zeroes [size, min(upto, end of size's block)): bytes a shrink
// left behind in the last block, about to become part of the file again.
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) zeroTail(in *inode, size, upto uint64) error {
	bs := uint64(f.bs)
	if size%bs == 0 || upto <= size {
		return nil
	}
	end := min(upto, (size/bs+1)*bs)
	return f.zeroMapped(in, int64(size), int64(end-size))
}

// truncateLocked sets the size, freeing blocks past the new end and
// zeroing the tail of a partial last block so a later extension reads zeros.
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) truncateLocked(in *inode, size uint64) error {
	old := in.size()
	if size > f.maxFileSize() {
		return syscall.EFBIG
	}
	bs := uint64(f.bs)
	if size < old {
		// The tail of a partial last block is not zeroed here but when
		// the file grows again (zeroTail): a data write now would reach
		// the device before the size change commits, and a crash would
		// bring back the old size with zeros in it.
		if err := f.freeRange(in, (size+bs-1)/bs, f.maxBlocks()); err != nil {
			f.logCorrupt(err)
		}
	} else if err := f.zeroTail(in, old, size); err != nil {
		return err
	}
	in.setSize(size)
	f.noteLargeFile(size)
	return nil
}

// Fallocate allocates or frees space. ext3 has no unwritten extents, so
// allocation writes zeros. Supported modes: 0, KEEP_SIZE,
// PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE (optionally with KEEP_SIZE).
func (f *FS) Fallocate(ino uint32, off, length int64, mode uint32) error {
	if off < 0 || length <= 0 {
		return syscall.EINVAL
	}
	return f.retryNoSpace(func() error { return f.fallocate(ino, off, length, mode) })
}

func (f *FS) fallocate(ino uint32, off, length int64, mode uint32) error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	in, err := f.iget(ino)
	if err != nil {
		return err
	}
	defer f.iput(in)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.isDir() {
		return syscall.EISDIR
	}
	if !in.isReg() {
		return syscall.ENODEV
	}
	end := off + length
	if uint64(end) > f.maxFileSize() {
		return syscall.EFBIG
	}
	if mode&fallocKeepSize != 0 {
		// Block-mapped files cannot hold blocks past i_size (e2fsck
		// reports them), so KEEP_SIZE only acts inside the file.
		end = min(end, int64(in.size()))
		if end <= off {
			return nil
		}
	}
	if size := in.size(); uint64(end) > size {
		if err := f.zeroTail(in, size, uint64(end)); err != nil {
			return err
		}
	}
	switch mode {
	case 0, fallocKeepSize:
		err = f.allocRange(in, off, end)
	case fallocPunchHole | fallocKeepSize:
		err = f.punch(in, off, end)
	case fallocZeroRange, fallocZeroRange | fallocKeepSize:
		err = f.zeroRange(in, off, end-off)
	default:
		return syscall.EOPNOTSUPP
	}
	if err != nil {
		f.writeInode(in)
		return err
	}
	if mode&fallocKeepSize == 0 && uint64(end) > in.size() {
		in.setSize(uint64(end))
		f.noteLargeFile(uint64(end))
	}
	in.setTime(tsCtime, now())
	if mode&(fallocPunchHole|fallocZeroRange) != 0 {
		in.setTime(tsMtime, now())
	}
	return f.writeInode(in)
}

// allocRange fills the holes of [off, end) with zeroed blocks.
func (f *FS) allocRange(in *inode, off, end int64) error {
	bs := int64(f.bs)
	for lblk := off / bs; lblk*bs < end; {
		p, run, err := f.mapRun(in, uint64(lblk), int((end-lblk*bs+bs-1)/bs))
		if err != nil {
			return err
		}
		if p == 0 {
			if err := f.zeroRange(in, lblk*bs, int64(run)*bs); err != nil {
				return err
			}
		}
		lblk += int64(run)
	}
	return nil
}

// punch frees the whole blocks inside [off, end) and zeroes the partial
// blocks at either edge.
func (f *FS) punch(in *inode, off, end int64) error {
	bs := int64(f.bs)
	if size := int64(in.size()); end > size {
		end = max(size, off)
	}
	first, last := (off+bs-1)/bs, end/bs // whole blocks [first, last)
	if first > last {
		return f.zeroMapped(in, off, end-off)
	}
	if err := f.zeroMapped(in, off, first*bs-off); err != nil {
		return err
	}
	if err := f.zeroMapped(in, last*bs, end-last*bs); err != nil {
		return err
	}
	if last > first {
		return f.freeRange(in, uint64(first), uint64(last))
	}
	return nil
}

// Fsync makes the file's data and all metadata durable by committing.
func (f *FS) Fsync(ino uint32, datasync bool) error {
	if f.ro {
		return nil
	}
	return f.commit()
}

// Open notes that ino is open, so an unlink keeps it until Release. An
// inode already freed is ENOENT: an open the kernel resolved to a file
// just before a rename replaced it may arrive after its last close freed
// it, and counting that open would keep a free inode "open" (its number
// could then be handed out under it).
func (f *FS) Open(ino uint32) error {
	in, err := f.igetLive(ino)
	if err != nil {
		return err
	}
	f.imu.Lock()
	if in.dying {
		// Its last Release is freeing it (orphan) right now.
		f.imu.Unlock()
		f.iput(in)
		return syscall.ENOENT
	}
	in.opens++
	in.refs--
	f.imu.Unlock()
	return nil
}

// Release drops an open reference; the last one frees an unlinked inode.
func (f *FS) Release(ino uint32) error {
	f.imu.Lock()
	in := f.inodes[ino]
	if in == nil || in.opens == 0 {
		f.imu.Unlock()
		return syscall.EBADF
	}
	in.opens--
	last := in.opens == 0 && in.orphan
	f.imu.Unlock()
	if !last || f.ro {
		return nil
	}
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	in.mu.Lock()
	defer in.mu.Unlock()
	f.imu.Lock()
	if in.opens != 0 || !in.orphan {
		f.imu.Unlock()
		return nil
	}
	in.dying = true // no Open counts from here on (Open)
	f.imu.Unlock()
	return f.deleteInode(in)
}

// pendingFreeCount is used by tests.
func (f *FS) pendingFreeCount() int64 { return atomic.LoadInt64(&f.pendingFrees) }
