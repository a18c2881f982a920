package ext3

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configures Open.
type Options struct {
	// ReadOnly opens without ever writing to the device.
	ReadOnly bool
	// CommitInterval is how often the running transaction is committed;
	// 0 means 5 seconds.
	CommitInterval time.Duration
	// IdleCommit commits the running transaction once no change has come
	// for this long; 0 means DefaultIdleCommit, a negative value turns it
	// off. A FUSE server never hears of sync(1) or syncfs(2) (the kernel
	// sends FUSE_SYNCFS to virtiofs only), so this is what makes what a
	// program wrote and synced that way durable soon after it stops
	// writing, rather than only at the next CommitInterval. fsync(2) of a
	// file or directory commits at once, as always.
	IdleCommit time.Duration
	// Logger receives debug traces and warnings about corruption found
	// while working; nil discards them.
	Logger *slog.Logger
	// CacheBytes bounds the clean metadata blocks and in-memory inodes
	// kept for reuse; 0 means DefaultCacheBytes. Blocks of the running
	// and the committing transaction are kept on top of it.
	CacheBytes int64
	// TransactionBytes is the size of changed metadata at which the
	// running transaction is committed in the background; at twice that
	// size changes wait for the commit. 0 means DefaultTransactionBytes.
	// Both are also capped by the journal's size. Memory use peaks near
	// CacheBytes + 3*TransactionBytes.
	TransactionBytes int64
	// NoReserve keeps every write out of the blocks reserved for root
	// (s_r_blocks_count), whoever owns the file, as the kernel does for
	// writers without CAP_SYS_RESOURCE: right for a server run by an
	// ordinary user, whose callers are never privileged. Without it the
	// file's owner stands in for the caller, and root-owned files may
	// use them.
	NoReserve bool
}

// Defaults for Options. They keep the package's memory use near 14 MiB
// whatever the workload, while a commit still takes about 500 4 KiB
// blocks. Blocks evicted from the cache are read again from the image
// file, which the host's page cache keeps, so a larger cache buys
// little: the 20,000-file untar took as long with 16 and 4 MiB, and
// held 8 MiB more of stage 1's heap.
const (
	DefaultCacheBytes       = 8 << 20
	DefaultTransactionBytes = 2 << 20
)

// DefaultIdleCommit is Options.IdleCommit's default: what was written and
// synced with sync(1) is durable about half a second to a second after
// the writing stops. Shorter adds commits between the bursts of a busy
// program for little.
const DefaultIdleCommit = 500 * time.Millisecond

// inodeCost is roughly what one cached in-memory inode costs, for
// sharing CacheBytes between blocks and inodes.
const inodeCost = 512

// FS is an open ext2/ext3 file system. All methods are safe for concurrent use.
type FS struct {
	dev       Device
	size      int64
	opts      Options
	log       *slog.Logger
	ro        bool
	bs        int    // block size in bytes
	apb       int    // block pointers per block
	inodeSize int    // bytes per on-disk inode
	itBlocks  uint32 // inode table blocks per group
	filetype  bool   // directory entries carry a file type
	cache     *cache
	jnl       *journal // nil without has_journal

	// op is the operation lock: every change to metadata holds it shared;
	// commit holds it exclusively while it snapshots the dirty blocks.
	op sync.RWMutex

	sbMu sync.Mutex // guards sb fields changed at run time
	sb   *superblock
	// sbDirty marks sb as changed since the last commit (guarded by sbMu).
	sbDirty bool

	// groups is immutable in length; each entry has its own lock.
	groups []group

	imu       sync.Mutex // guards inodes, orphans and inode refs/opens/orphan
	inodes    map[uint32]*inode
	orphans   map[uint32]*inode // unlinked while open
	maxInodes int

	// renameMu serialises renames between different directories, like the
	// kernel's s_vfs_rename_mutex, so ancestry cannot change under them.
	renameMu sync.Mutex

	freeBlocks   int64 // atomic: free blocks in the bitmaps
	freeInodes   int64 // atomic
	pendingFrees int64 // atomic: freed blocks waiting for the next commit

	commitMu sync.Mutex // one commit at a time
	flyMu    sync.Mutex
	flyCond  *sync.Cond
	flying   bool  // a commit is writing its blocks (guarded by flyMu)
	fatal    error // sticky commit failure (guarded by commitMu)

	kick chan struct{}
	stop chan struct{}
	// changes counts finished changing operations; idleArmed says the
	// commit loop is timing a quiet spell, and wake arms it (IdleCommit).
	changes   atomic.Uint64
	idleArmed atomic.Bool
	wake      chan struct{}
	wbq       chan wbRange // ranges for early write-back (writeback.go)
	wg        sync.WaitGroup
	closed    atomic.Bool
	fresh     bool // opened by Mkfs
	// jnlBlocks is the size of the journal in blocks (0 without one).
	jnlBlocks uint32
	// onNewInode is OnNewInode's function, or nil.
	onNewInode atomic.Pointer[func(uint32)]
	// jnlRuns are the journal's fs blocks as sorted [first, end) runs,
	// which the allocator must never hand out.
	jnlRuns [][2]uint32

	// mounted is set once the superblock says "in use" on disk (see
	// markMounted); mountMu serialises the first write.
	mounted  atomic.Bool
	mountMu  sync.Mutex
	mountErr error // guarded by mountMu
	// crashed is set by a writable Open of an image a crash left marked
	// in use (needs_recovery) with nothing to replay: Close must mark it
	// clean even if nothing changes, as the kernel's unmount would.
	crashed bool
}

// Open opens the file system on dev, which is size bytes long. It
// validates the superblock, group descriptors and journal superblock
// before writing anything, replays the journal if it needs recovery
// (writable opens only), and checks the root inode is a directory. The
// superblock is marked in use (mount count and time, needs_recovery) only
// before the first change, so an image that a caller refuses after Open,
// or only reads, is left byte for byte as it was.
func Open(dev Device, size int64, opts Options) (*FS, error) {
	return open(dev, size, opts, false)
}

// open is Open; fresh (from Mkfs) leaves the mount count and time alone.
func open(dev Device, size int64, opts Options, fresh bool) (*FS, error) {
	f := &FS{dev: dev, size: size, opts: opts, ro: opts.ReadOnly, log: opts.Logger, fresh: fresh}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.opts.CommitInterval <= 0 {
		f.opts.CommitInterval = 5 * time.Second
	}
	if f.opts.IdleCommit == 0 {
		f.opts.IdleCommit = DefaultIdleCommit
	}
	if f.opts.CacheBytes <= 0 {
		f.opts.CacheBytes = DefaultCacheBytes
	}
	if f.opts.TransactionBytes <= 0 {
		f.opts.TransactionBytes = DefaultTransactionBytes
	}
	f.flyCond = sync.NewCond(&f.flyMu)
	if err := f.load(); err != nil {
		return nil, err
	}
	if f.sb.has(compatHasJournal) {
		replayed, err := f.openJournal()
		if err != nil {
			return nil, err
		}
		if replayed {
			// Recovery rewrote metadata at home locations: start over.
			if err := f.load(); err != nil {
				return nil, err
			}
			// The image changed; the superblock gets its mount fields and
			// the free counts summed from the replayed descriptors.
			f.mounted.Store(false)
			if err := f.markMounted(); err != nil {
				return nil, err
			}
		}
		// A kill after the last checkpoint leaves needs_recovery with an
		// empty log: nothing to replay, but the flag must go at Close.
		f.crashed = !replayed && !f.ro && f.sb.FeatureIncompat&incompatRecover != 0
	} else if f.sb.FeatureIncompat&incompatRecover != 0 {
		return nil, corrupt("superblock", 0, 0, "needs_recovery set without a journal")
	}
	if err := f.checkRoot(); err != nil {
		return nil, err
	}
	if f.ro {
		return f, nil
	}
	if f.sb.LastOrphan != 0 {
		// A crash left unlinked inodes to free: that is a change.
		if err := f.markMounted(); err != nil {
			return nil, err
		}
		if err := f.processOrphans(); err != nil {
			return nil, err
		}
	}
	f.kick = make(chan struct{}, 1)
	f.wake = make(chan struct{}, 1)
	f.stop = make(chan struct{})
	f.wg.Add(1)
	go f.commitLoop()
	f.startWritebackLoop()
	return f, nil
}

// load reads and validates the superblock and group descriptors.
func (f *FS) load() error {
	raw := make([]byte, superblockSize)
	if f.size < superblockOffset+superblockSize {
		return corrupt("superblock", 0, 0, "device of %d bytes is too small", f.size)
	}
	if _, err := f.dev.ReadAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("ext3: read superblock: %w", err)
	}
	sb := decodeSuperblock(raw)
	if err := sb.validate(f.size); err != nil {
		return err
	}
	if err := sb.checkFeatures(""); err != nil {
		return err
	}
	f.sb = sb
	f.bs = sb.blockSize()
	f.apb = f.bs / 4
	f.inodeSize = sb.inodeSize()
	f.itBlocks = (sb.InodesPerGroup*uint32(f.inodeSize) + uint32(f.bs) - 1) / uint32(f.bs)
	f.filetype = sb.FeatureIncompat&incompatFiletype != 0
	// Three quarters of the budget for blocks, one for inodes.
	f.cache = newCache(f.dev, f.bs, f.opts.CacheBytes/4*3)
	f.inodes = make(map[uint32]*inode)
	f.orphans = make(map[uint32]*inode)
	f.maxInodes = int(max(f.opts.CacheBytes/4/inodeCost, 1024))

	ng := sb.groupCount()
	gdt := make([]byte, int(sb.gdtBlocks())*f.bs)
	if _, err := f.dev.ReadAt(gdt, int64(sb.FirstDataBlock+1)*int64(f.bs)); err != nil {
		return fmt.Errorf("ext3: read group descriptors: %w", err)
	}
	f.groups = make([]group, ng)
	var freeB, freeI int64
	for i := range f.groups {
		f.groups[i].desc = decodeGroupDesc(gdt[i*groupDescSize:])
		freeB += int64(f.groups[i].desc.FreeBlocksCount)
		freeI += int64(f.groups[i].desc.FreeInodesCount)
	}
	if err := f.validateGroups(); err != nil {
		return err
	}
	f.freeBlocks, f.freeInodes = freeB, freeI
	return nil
}

// openJournal loads the journal and replays it if needed. It reports
// whether a replay happened.
func (f *FS) openJournal() (bool, error) {
	sb := f.sb
	if sb.JournalDev != 0 || sb.JournalInum == 0 {
		return false, &unsupportedError{feature: "external journal"}
	}
	if sb.JournalInum != journalIno {
		return false, corrupt("superblock", 0, 0, "journal inode %d", sb.JournalInum)
	}
	in, err := f.iget(journalIno)
	if err != nil {
		return false, withContext("journal inode", err)
	}
	defer f.iput(in)
	if !in.isReg() || in.size() < 1024*uint64(f.bs) || in.size()%uint64(f.bs) != 0 {
		return false, corrupt("journal inode", 0, journalIno, "mode %o size %d", in.mode(), in.size())
	}
	n := in.size() / uint64(f.bs)
	if n > uint64(sb.BlocksCount) {
		return false, corrupt("journal inode", 0, journalIno, "%d blocks", n)
	}
	phys, ind, err := f.bmapAllInd(in, n)
	if err != nil {
		return false, withContext("journal block map", err)
	}
	for i, p := range phys {
		if p == 0 {
			return false, corrupt("journal inode", 0, journalIno, "hole at block %d", i)
		}
	}
	// A block the map names twice would have journal records overwrite
	// each other, or the map itself: refuse it before anything is written.
	all := slices.Concat(phys, ind)
	slices.Sort(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			return false, corrupt("journal inode", all[i], journalIno,
				"block %d mapped twice", all[i])
		}
	}
	f.jnlBlocks = uint32(len(phys))
	j, err := loadJournal(f.dev, f.bs, phys)
	if err != nil {
		return false, err
	}
	j.alsoOwn(ind, phys[len(j.phys):])
	f.jnl = j
	f.jnlRuns = blockRuns(j.own)
	if !f.ro {
		j.beforeWrite = f.markMounted
	}
	if !j.needsRecovery() {
		return false, nil
	}
	if f.ro {
		return false, ErrNeedsRecovery
	}
	f.log.Debug("ext3: replaying journal")
	if err := j.recover(); err != nil {
		return false, withContext("journal recovery", err)
	}
	return true, nil
}

// checkRoot refuses an image whose root inode is not a directory.
func (f *FS) checkRoot() error {
	in, err := f.iget(RootIno)
	if err != nil {
		return withContext("root inode", err)
	}
	defer f.iput(in)
	if !in.isDir() || in.nlink() == 0 {
		return corrupt("root inode", 0, RootIno, "mode %o, %d links: not a directory",
			in.mode(), in.nlink())
	}
	return nil
}

// markMounted marks the file system in use (ext4_setup_super) before the
// first change: mount count and time, and needs_recovery when journaled,
// or a cleared valid bit without a journal. It writes and syncs the
// superblock in place, so needs_recovery is on disk before any journal
// commit. Opening alone never writes: a caller may still refuse the image.
// Preconditions: no op lock held by the caller's goroutine is needed.
func (f *FS) markMounted() error {
	if f.mounted.Load() {
		return nil
	}
	f.mountMu.Lock()
	defer f.mountMu.Unlock()
	if f.mounted.Load() || f.mountErr != nil {
		return f.mountErr
	}
	f.sbMu.Lock()
	f.setMountFields()
	f.sbMu.Unlock()
	if err := f.writeSuperDirect(); err != nil {
		f.mountErr = err
		return err
	}
	f.mounted.Store(true)
	return nil
}

// setMountFields sets the superblock fields of a mount: mount count and
// time, needs_recovery or a cleared valid bit. Caller holds sbMu.
func (f *FS) setMountFields() {
	sb := f.sb
	if !f.fresh {
		sb.MntCount++
		sb.Mtime = uint32(time.Now().Unix())
	}
	if f.jnl != nil {
		sb.FeatureIncompat |= incompatRecover
	} else {
		sb.State &^= stateValid
	}
}

// writeSuperDirect writes the primary superblock in place and syncs.
func (f *FS) writeSuperDirect() error {
	raw := make([]byte, superblockSize)
	if _, err := f.dev.ReadAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("ext3: read superblock: %w", err)
	}
	f.sbMu.Lock()
	// The on-disk counts may be stale (the kernel does not keep them up
	// to date either); the group descriptors, summed at load, are right.
	f.sb.FreeBlocksCount = uint32(atomic.LoadInt64(&f.freeBlocks))
	f.sb.FreeInodesCount = uint32(atomic.LoadInt64(&f.freeInodes))
	f.sb.encode(raw)
	f.sbMu.Unlock()
	if _, err := f.dev.WriteAt(raw, superblockOffset); err != nil {
		return fmt.Errorf("ext3: write superblock: %w", err)
	}
	f.cache.forget(superblockOffset / uint32(f.bs))
	return f.dev.Sync()
}

func (f *FS) logCorrupt(err error) {
	if err != nil {
		f.log.Warn("ext3: problem found", "err", err)
	}
}

// begin starts a metadata-changing operation.
func (f *FS) begin() error {
	if f.closed.Load() {
		return ErrClosed
	}
	if f.ro {
		return syscall.EROFS
	}
	if err := f.markMounted(); err != nil {
		return err
	}
	if f.cache.dirtyCount() > f.txLimit()*2 {
		// The background commit did not keep up: wait for one.
		if err := f.commit(); err != nil {
			return err
		}
	}
	f.op.RLock()
	return nil
}

// end finishes an operation started with begin.
func (f *FS) end() {
	f.op.RUnlock()
	f.changes.Add(1)
	if f.cache.dirtyCount() > f.txLimit() {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
	if f.opts.IdleCommit > 0 && !f.idleArmed.Load() && f.idleArmed.CompareAndSwap(false, true) {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// txLimit is the number of dirty metadata blocks past which the running
// transaction is committed in the background (see begin for the hard
// limit at twice that). A commit must fit the journal with room to spare:
// blocks dirtied between the kick and the snapshot join it.
func (f *FS) txLimit() int {
	n := int(f.opts.TransactionBytes / int64(f.bs))
	if f.jnl != nil {
		n = min(n, f.jnl.capacity()/4)
	}
	return max(n, 16)
}

// commitLoop commits every CommitInterval, when end kicks it (a large
// transaction), and once changes have stopped for IdleCommit: the quiet
// spell is timed only while changes come, so an idle FS does not wake.
func (f *FS) commitLoop() {
	defer f.wg.Done()
	t := time.NewTicker(f.opts.CommitInterval)
	defer t.Stop()
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	var seen uint64 // f.changes when the quiet spell being timed began
	for {
		select {
		case <-f.stop:
			idle.Stop()
			return
		case <-t.C:
		case <-f.kick:
		case <-f.wake:
			seen = f.changes.Load()
			idle.Reset(f.opts.IdleCommit)
			continue
		case <-idle.C:
			if n := f.changes.Load(); n != seen {
				seen = n // not quiet yet: time a new spell
				idle.Reset(f.opts.IdleCommit)
				continue
			}
			f.idleArmed.Store(false)
		}
		if err := f.commit(); err != nil {
			f.log.Warn("ext3: commit failed", "err", err)
		}
	}
}

func (f *FS) setFlying(v bool) {
	f.flyMu.Lock()
	f.flying = v
	if !v {
		f.flyCond.Broadcast()
	}
	f.flyMu.Unlock()
}

// waitFlight waits until no commit is writing blocks.
func (f *FS) waitFlight() {
	f.flyMu.Lock()
	for f.flying {
		f.flyCond.Wait()
	}
	f.flyMu.Unlock()
}

// commit writes the running transaction: it snapshots every dirty
// metadata block under the exclusive op lock, then (without it) syncs file
// data and hands the blocks to the journal, which checkpoints them.
func (f *FS) commit() error {
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	if f.fatal != nil {
		return f.fatal
	}
	f.op.Lock()
	f.applyPendingFrees()
	f.flushOrphansLocked()
	f.flushGroupsLocked()
	if !f.mounted.Load() && (f.cache.dirtyCount() > 0 || f.sbDirty) {
		// Every change goes through begin, which marks the superblock;
		// keep the order (needs_recovery before any journal write) even
		// if some path forgot.
		if err := f.markMounted(); err != nil {
			f.op.Unlock()
			return err
		}
	}
	if f.cache.dirtyCount() > 0 || f.sbDirty {
		if err := f.flushSuperLocked(); err != nil {
			f.op.Unlock()
			return err
		}
	}
	blocks, bufs := f.cache.snapshot()
	f.setFlying(true)
	f.op.Unlock()

	err := f.writeTransaction(blocks)
	f.cache.landed(bufs)
	if err == nil {
		f.releaseQuarantine()
	}
	f.setFlying(false)
	if err != nil {
		f.fatal = fmt.Errorf("ext3: commit of %d blocks: %w", len(blocks), err)
		return f.fatal
	}
	return nil
}

func (f *FS) writeTransaction(blocks []metaBlock) error {
	if len(blocks) == 0 {
		return nil
	}
	if f.jnl != nil {
		return f.jnl.commit(blocks)
	}
	// ext2: no atomicity, but keep the ordered-mode rule.
	if err := f.dev.Sync(); err != nil {
		return err
	}
	for _, b := range blocks {
		if _, err := f.dev.WriteAt(b.data, int64(b.nr)*int64(f.bs)); err != nil {
			return err
		}
	}
	return f.dev.Sync()
}

// flushGroupsLocked encodes changed group descriptors into the GDT blocks.
// Preconditions: op held exclusively.
func (f *FS) flushGroupsLocked() {
	perBlock := f.bs / groupDescSize
	for i := range f.groups {
		g := &f.groups[i]
		if !g.dirty {
			continue
		}
		blk := f.sb.FirstDataBlock + 1 + uint32(i/perBlock)
		b, err := f.cache.get(blk)
		if err != nil {
			f.logCorrupt(err)
			continue
		}
		g.desc.encode(b.data[(i%perBlock)*groupDescSize:])
		f.cache.markDirty(b)
		f.cache.put(b)
		g.dirty = false
	}
}

// flushSuperLocked encodes the superblock, with current free counts, into
// its block. Preconditions: op held exclusively.
func (f *FS) flushSuperLocked() error {
	blk := uint32(superblockOffset / f.bs)
	b, err := f.cache.get(blk)
	if err != nil {
		return err
	}
	f.sbMu.Lock()
	f.sb.FreeBlocksCount = uint32(atomic.LoadInt64(&f.freeBlocks))
	f.sb.FreeInodesCount = uint32(atomic.LoadInt64(&f.freeInodes))
	f.sb.Wtime = uint32(time.Now().Unix())
	f.sb.encode(b.data[superblockOffset%f.bs:])
	f.sbDirty = false
	f.sbMu.Unlock()
	f.cache.markDirty(b)
	f.cache.put(b)
	return nil
}

// Sync commits the running transaction.
func (f *FS) Sync() error {
	if f.ro || f.closed.Load() {
		return nil
	}
	return f.commit()
}

// Close commits, frees unlinked inodes still open, clears needs_recovery,
// marks the file system clean and syncs. The FS is unusable afterwards.
func (f *FS) Close() error {
	if f.closed.Swap(true) {
		return ErrClosed
	}
	if f.ro {
		return nil
	}
	close(f.stop)
	f.wg.Wait()
	var errs []error
	errs = append(errs, f.freeOrphansAtClose())
	errs = append(errs, f.commit())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !f.mounted.Load() && !f.crashed {
		return nil // nothing was ever changed: the image is as it was
	}
	f.sbMu.Lock()
	if !f.mounted.Load() {
		// A crashed image with nothing to replay and no change since:
		// the mount fields it would have had, then the clean unmount, in
		// one superblock write.
		f.setMountFields()
	}
	f.sb.FeatureIncompat &^= incompatRecover
	if f.jnl == nil {
		f.sb.State |= stateValid
	}
	f.sb.Wtime = uint32(time.Now().Unix())
	f.sbMu.Unlock()
	return f.writeSuperDirect()
}

// Statfs reports file system usage like the kernel's ext4_statfs (bsddf).
type Statfs struct {
	Bsize                               uint32
	Blocks, Bfree, Bavail, Files, Ffree uint64
	NameLen                             uint32
}

// Statfs returns usage numbers.
func (f *FS) Statfs() Statfs {
	sb := f.sb
	free := uint64(atomic.LoadInt64(&f.freeBlocks) + atomic.LoadInt64(&f.pendingFrees))
	avail := uint64(0)
	if free > uint64(sb.RBlocksCount) {
		avail = free - uint64(sb.RBlocksCount)
	}
	return Statfs{
		Bsize:   uint32(f.bs),
		Blocks:  uint64(sb.BlocksCount) - f.overhead(),
		Bfree:   free,
		Bavail:  avail,
		Files:   uint64(sb.InodesCount),
		Ffree:   uint64(atomic.LoadInt64(&f.freeInodes)),
		NameLen: maxNameLen,
	}
}

// overhead counts blocks used by fixed metadata and the journal. Like
// the kernel it trusts s_overhead_clusters when mke2fs recorded it.
func (f *FS) overhead() uint64 {
	sb := f.sb
	if v := le.Uint32(sb.Rest[0x248-0x180:]); v != 0 && v < sb.BlocksCount {
		return uint64(v)
	}
	o := uint64(sb.FirstDataBlock)
	for g := uint32(0); g < sb.groupCount(); g++ {
		o += uint64(sb.groupMetaBlocks(g)) + 2 + uint64(f.itBlocks)
	}
	return o + uint64(f.jnlBlocks)
}

// Info describes an open file system.
type Info struct {
	Size           int64 // device size in bytes
	BlockSize      uint32
	Blocks         uint64
	FreeBlocks     uint64
	Inodes         uint64
	FreeInodes     uint64
	InodeSize      uint32
	Features       string // space separated, dumpe2fs names
	Journal        string // "none", "internal"
	Label          string
	UUID           [16]byte
	ReadOnly       bool
	MountCount     uint16
	ReservedBlocks uint64
}

// Info returns a description of the file system.
func (f *FS) Info() Info {
	f.sbMu.Lock()
	defer f.sbMu.Unlock()
	j := "none"
	if f.jnl != nil {
		j = "internal"
	}
	return Info{
		Size: f.size, BlockSize: uint32(f.bs), Blocks: uint64(f.sb.BlocksCount),
		FreeBlocks: uint64(atomic.LoadInt64(&f.freeBlocks) + atomic.LoadInt64(&f.pendingFrees)),
		Inodes:     uint64(f.sb.InodesCount), FreeInodes: uint64(atomic.LoadInt64(&f.freeInodes)),
		InodeSize: uint32(f.inodeSize), Features: f.sb.featureString(), Journal: j,
		Label: f.sb.label(), UUID: f.sb.UUID, ReadOnly: f.ro, MountCount: f.sb.MntCount,
		ReservedBlocks: uint64(f.sb.RBlocksCount),
	}
}
