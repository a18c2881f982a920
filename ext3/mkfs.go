package ext3

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MkfsOptions configures Mkfs. Zero values choose what mke2fs 1.47 with
// the stock /etc/mke2fs.conf chooses for mkfs.ext3.
type MkfsOptions struct {
	BlockSize  uint32 // 0: 1024 below 512 MiB, else 4096
	InodeSize  uint16 // 0: 256
	InodeRatio uint32 // 0: 4096 below 512 MiB, else 16384
	Label      string
	UUID       [16]byte // zero: random
	Dirs       []MkfsDir
}

// MkfsDir is a directory Mkfs creates, with missing parents made alike.
type MkfsDir struct {
	Path     string // relative to the root, e.g. "upper" or "upper/a/b"
	Mode     uint32 // permission bits
	Uid, Gid uint32
}

// mkfs geometry and the blocks it writes.
type mkfsState struct {
	sb       *superblock
	bs       int
	isz      int
	itb      uint32 // inode table blocks per group
	groups   []groupDesc
	bbm, ibm [][]byte          // bitmaps per group
	blocks   map[uint32][]byte // metadata block contents to write
	inodes   map[uint32][]byte // inode number -> raw inode
	cursor   uint32            // next block the allocator tries
	now      uint32
}

// Mkfs formats dev (size bytes) as ext3 the way `mkfs.ext3 -d staging`
// does for `apptainer overlay create`: has_journal ext_attr resize_inode
// dir_index filetype sparse_super large_file, root 0:0 0755, lost+found,
// then the requested directories. Blocks that are already zero on the
// device are not written, so a sparse image stays sparse.
func Mkfs(dev Device, size int64, opts MkfsOptions) error {
	m, err := newMkfs(size, opts)
	if err != nil {
		return err
	}
	if err := m.build(); err != nil {
		return err
	}
	if err := m.write(dev); err != nil {
		return err
	}
	f, err := open(dev, size, Options{}, true)
	if err != nil {
		return fmt.Errorf("ext3: mkfs: reopen: %w", err)
	}
	for _, d := range opts.Dirs {
		if err := f.mkdirAll(d); err != nil {
			f.Close()
			return fmt.Errorf("ext3: mkfs: directory %q: %w", d.Path, err)
		}
	}
	return f.Close()
}

func newMkfs(size int64, opts MkfsOptions) (*mkfsState, error) {
	bs, isz, ratio := opts.BlockSize, uint32(opts.InodeSize), opts.InodeRatio
	if bs == 0 {
		bs = 4096
		if size < 512<<20 {
			bs = 1024
		}
	}
	if isz == 0 {
		isz = 256
	}
	if ratio == 0 {
		ratio = 16384
		if size < 512<<20 {
			ratio = 4096
		}
	}
	switch {
	case bs != 1024 && bs != 2048 && bs != 4096:
		return nil, fmt.Errorf("ext3: mkfs: block size %d: %w", bs, syscall.EINVAL)
	case isz != 128 && isz != 256 && isz != 512 && isz != 1024 || isz > bs:
		return nil, fmt.Errorf("ext3: mkfs: inode size %d: %w", isz, syscall.EINVAL)
	case ratio < bs:
		return nil, fmt.Errorf("ext3: mkfs: inode ratio %d: %w", ratio, syscall.EINVAL)
	}
	nblocks := uint64(size) / uint64(bs)
	if nblocks > 1<<32-1 {
		nblocks = 1<<32 - 1
	}
	if nblocks < 2048 {
		return nil, fmt.Errorf("ext3: mkfs: %d bytes is too small for a journaled file system", size)
	}
	sb := &superblock{
		BlocksCount: uint32(nblocks), LogBlockSize: log2(bs / 1024), LogClusterSize: log2(bs / 1024),
		BlocksPerGroup: 8 * bs, ClustersPerGroup: 8 * bs, MaxMntCount: 0xffff, Magic: ext2Magic,
		State: stateValid, Errors: 1, RevLevel: 1, FirstIno: 11, InodeSize: uint16(isz),
		FeatureCompat:    compatHasJournal | compatExtAttr | compatResizeInode | compatDirIndex,
		FeatureIncompat:  incompatFiletype,
		FeatureROCompat:  roCompatSparseSuper | roCompatLargeFile,
		JournalInum:      journalIno,
		DefHashVersion:   hashHalfMD4,
		JnlBackupType:    1, // EXT3_JNL_BACKUP_BLOCKS
		DefaultMountOpts: defmXattrUser | defmACL,
		Flags:            flagsSignedHash,
	}
	if bs == 1024 {
		sb.FirstDataBlock = 1
	}
	if isz > goodOldInode {
		sb.MinExtraIsize, sb.WantExtraIsize = extraIsize, extraIsize
	}
	m := &mkfsState{sb: sb, bs: int(bs), isz: int(isz), blocks: map[uint32][]byte{},
		inodes: map[uint32][]byte{}, now: uint32(time.Now().Unix())}
	m.geometry(uint64(size)/uint64(ratio), opts)
	return m, nil
}

func log2(v uint32) uint32 {
	n := uint32(0)
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}

// geometry sets group count, inodes per group and reserved GDT blocks as
// ext2fs_initialize and calc_reserved_gdt_blocks do.
func (m *mkfsState) geometry(inodes uint64, opts MkfsOptions) {
	sb, bs := m.sb, uint32(m.bs)
	for {
		ng := sb.groupCount()
		ipg := uint32((inodes + uint64(ng) - 1) / uint64(ng))
		ipg = max(ipg, 16)
		ipg = min(ipg, 8*bs)
		m.itb = (ipg*uint32(m.isz) + bs - 1) / bs
		ipg = (m.itb * bs / uint32(m.isz)) &^ 7
		// Rounding down to a multiple of 8 can leave the last block of
		// the table empty (1 KiB blocks hold 4 inodes): the table is then
		// a block shorter, or the group keeps a block nothing uses, which
		// e2fsck reports.
		m.itb = (ipg*uint32(m.isz) + bs - 1) / bs
		sb.InodesPerGroup = ipg
		sb.InodesCount = ipg * ng

		// Reserved GDT blocks: room to grow 1024-fold (or to 2^32 blocks).
		maxBlocks := uint64(0xffffffff)
		if uint64(sb.BlocksCount) < maxBlocks/1024 {
			maxBlocks = uint64(sb.BlocksCount) * 1024
		}
		gdpb := uint64(bs / groupDescSize)
		rsvGroups := (maxBlocks - uint64(sb.FirstDataBlock) + uint64(sb.BlocksPerGroup) - 1) /
			uint64(sb.BlocksPerGroup)
		rsv := (rsvGroups+gdpb-1)/gdpb - uint64(sb.gdtBlocks())
		sb.ReservedGDTBlocks = uint16(min(rsv, uint64(bs/4)))

		// Drop a last group too small to hold its own metadata plus 50
		// blocks, as mke2fs does.
		last := ng - 1
		rem := sb.BlocksCount - sb.groupFirstBlock(last)
		if ng > 1 && rem < sb.groupMetaBlocks(last)+2+m.itb+50 {
			sb.BlocksCount -= rem
			continue
		}
		break
	}
	sb.RBlocksCount = uint32(uint64(sb.BlocksCount) * 5 / 100)
	sb.UUID = opts.UUID
	if sb.UUID == [16]byte{} {
		rand.Read(sb.UUID[:])
		sb.UUID[6] = sb.UUID[6]&0x0f | 0x40
		sb.UUID[8] = sb.UUID[8]&0x3f | 0x80
	}
	var seed [16]byte
	rand.Read(seed[:])
	for i := range sb.HashSeed {
		sb.HashSeed[i] = le.Uint32(seed[4*i:])
	}
	copy(sb.VolumeName[:], opts.Label)
	sb.Wtime, sb.Lastcheck, sb.MkfsTime = m.now, m.now, m.now
}

// build lays out groups, bitmaps and the special inodes.
func (m *mkfsState) build() error {
	sb := m.sb
	ng := sb.groupCount()
	m.groups = make([]groupDesc, ng)
	m.bbm = make([][]byte, ng)
	m.ibm = make([][]byte, ng)
	for g := uint32(0); g < ng; g++ {
		start := sb.groupFirstBlock(g)
		meta := sb.groupMetaBlocks(g)
		d := &m.groups[g]
		d.BlockBitmap = start + meta
		d.InodeBitmap = start + meta + 1
		d.InodeTable = start + meta + 2
		bb := make([]byte, m.bs)
		for i := uint32(0); i < meta+2+m.itb; i++ {
			setBit(bb, i)
		}
		for i := sb.groupBlocks(g); i < uint32(8*m.bs); i++ {
			setBit(bb, i) // padding past the end of the last group
		}
		ib := make([]byte, m.bs)
		for i := sb.InodesPerGroup; i < uint32(8*m.bs); i++ {
			setBit(ib, i)
		}
		m.bbm[g], m.ibm[g] = bb, ib
	}
	for ino := uint32(1); ino < sb.FirstIno; ino++ {
		setBit(m.ibm[0], ino-1)
	}
	m.cursor = m.groups[0].InodeTable + m.itb

	// Root and lost+found, like mke2fs: lost+found gets 16 KiB or 12
	// blocks, whichever is smaller, so e2fsck can use it on a full disk.
	rootBlk, err := m.alloc()
	if err != nil {
		return err
	}
	root := m.newInode(RootIno, sIFDIR|0755, 3)
	m.setBlocks(root, []uint32{rootBlk}, 1)
	d := make([]byte, m.bs)
	m.dirent(d, 0, RootIno, 12, ".")
	m.dirent(d, 12, RootIno, 12, "..")
	m.dirent(d, 24, 11, m.bs-24, lostFoundName)
	m.blocks[rootBlk] = d
	m.useInode(RootIno, true)

	nlf := min(12, max(2, 16384/m.bs))
	lf := m.newInode(11, sIFDIR|0700, 2)
	var lfBlocks []uint32
	for i := 0; i < nlf; i++ {
		b, err := m.alloc()
		if err != nil {
			return err
		}
		lfBlocks = append(lfBlocks, b)
		d := make([]byte, m.bs)
		if i == 0 {
			m.dirent(d, 0, 11, 12, ".")
			m.dirent(d, 12, RootIno, m.bs-12, "..")
		} else {
			m.dirent(d, 0, 0, m.bs, "")
		}
		m.blocks[b] = d
	}
	m.setBlocks(lf, lfBlocks, uint32(nlf))
	m.useInode(11, true)

	if err := m.buildResizeInode(); err != nil {
		return err
	}
	return m.buildJournal()
}

func (m *mkfsState) dirent(d []byte, off int, ino uint32, rl int, name string) {
	le.PutUint32(d[off:], ino)
	le.PutUint16(d[off+4:], uint16(rl))
	d[off+6] = byte(len(name))
	if ino != 0 {
		d[off+7] = ftDir
	}
	copy(d[off+8:], name)
}

func (m *mkfsState) newInode(ino uint32, mode uint32, links uint16) *inode {
	in := &inode{ino: ino, raw: make([]byte, m.isz)}
	if m.isz > goodOldInode {
		in.set16(iExtraIsize, extraIsize)
	}
	in.set16(iMode, uint16(mode))
	in.set16(iLinks, links)
	for _, s := range []tsSlot{tsAtime, tsMtime, tsCtime} {
		in.setTime(s, Timespec{Sec: int64(m.now)})
	}
	if in.extraSize() >= iCrtimeExtra+4-goodOldInode {
		in.set32(iCrtime, m.now)
	}
	m.inodes[ino] = in.raw
	return in
}

// setBlocks stores a direct-only block list (at most 12 blocks).
func (m *mkfsState) setBlocks(in *inode, list []uint32, n uint32) {
	for i, b := range list {
		in.setBlockPtr(i, b)
	}
	in.setSize(uint64(n) * uint64(m.bs))
	in.set32(iBlocksLo, n*uint32(m.bs/512))
}

func (m *mkfsState) useInode(ino uint32, dir bool) {
	g := (ino - 1) / m.sb.InodesPerGroup
	setBit(m.ibm[g], (ino-1)%m.sb.InodesPerGroup)
	if dir {
		m.groups[g].UsedDirsCount++
	}
}

// alloc takes the next free block.
func (m *mkfsState) alloc() (uint32, error) {
	sb := m.sb
	for ; m.cursor < sb.BlocksCount; m.cursor++ {
		g := (m.cursor - sb.FirstDataBlock) / sb.BlocksPerGroup
		i := m.cursor - sb.groupFirstBlock(g)
		if !testBit(m.bbm[g], i) {
			setBit(m.bbm[g], i)
			m.cursor++
			return m.cursor - 1, nil
		}
	}
	return 0, fmt.Errorf("ext3: mkfs: image too small for its metadata: %w", syscall.ENOSPC)
}

// buildResizeInode makes inode 7 reserve the GDT blocks for online
// resizing: its double indirect block lists the primary reserved GDT
// blocks, each of which, used as an indirect block, lists its backups in
// the other groups with a superblock (ext2fs_create_resize_inode).
func (m *mkfsState) buildResizeInode() error {
	sb := m.sb
	apb := uint32(m.bs / 4)
	in := m.newInode(resizeIno, sIFREG|0600, 1)
	dind, err := m.alloc()
	if err != nil {
		return err
	}
	dd := make([]byte, m.bs)
	gdt := sb.gdtBlocks()
	var backups []uint32
	for g := uint32(1); g < sb.groupCount(); g++ {
		if sb.groupHasSuper(g) {
			backups = append(backups, g)
		}
	}
	for i := uint32(0); i < uint32(sb.ReservedGDTBlocks); i++ {
		pri := sb.FirstDataBlock + 1 + gdt + i
		le.PutUint32(dd[4*((gdt+i)%apb):], pri)
		ind := make([]byte, m.bs)
		for j, g := range backups {
			le.PutUint32(ind[4*j:], pri+g*sb.BlocksPerGroup)
		}
		m.blocks[pri] = ind
	}
	m.blocks[dind] = dd
	in.setBlockPtr(indSlot+1, dind)
	nblk := 1 + uint32(sb.ReservedGDTBlocks)*(1+uint32(len(backups)))
	in.set32(iBlocksLo, nblk*uint32(m.bs/512))
	in.setSize((uint64(apb)*uint64(apb) + uint64(apb) + nDirect) * uint64(m.bs))
	return nil
}

// journalBlocks is ext2fs_default_journal_size.
func journalBlocks(n uint32) uint32 {
	switch {
	case n < 32768:
		return 1024
	case n < 256*1024:
		return 4096
	case n < 512*1024:
		return 8192
	case n < 4096*1024:
		return 16384
	case n < 8192*1024:
		return 32768
	case n < 16384*1024:
		return 65536
	case n < 32768*1024:
		return 131072
	}
	return 262144
}

// buildJournal makes inode 8 with a contiguous run of blocks, indirect
// blocks placed before the data they map, and its first block holding the
// JBD2 superblock.
func (m *mkfsState) buildJournal() error {
	sb := m.sb
	n := journalBlocks(sb.BlocksCount)
	in := m.newInode(journalIno, sIFREG|0600, 1)
	apb := uint64(m.bs / 4)
	ind := map[[2]uint64]uint32{} // (level, index) -> block
	total := uint32(0)
	get := func(key [2]uint64) (uint32, error) {
		if b, ok := ind[key]; ok {
			return b, nil
		}
		b, err := m.alloc()
		if err != nil {
			return 0, err
		}
		total++
		ind[key] = b
		m.blocks[b] = make([]byte, m.bs)
		return b, nil
	}
	var first uint32
	for l := uint64(0); l < uint64(n); l++ {
		var slot []byte // where the data pointer goes
		var off uint64
		switch {
		case l < nDirect:
		case l < nDirect+apb:
			b, err := get([2]uint64{1, 0})
			if err != nil {
				return err
			}
			in.setBlockPtr(indSlot, b)
			slot, off = m.blocks[b], l-nDirect
		default:
			r := l - nDirect - apb
			if r >= apb*apb {
				return fmt.Errorf("ext3: mkfs: journal of %d blocks needs a triple indirect block", n)
			}
			d, err := get([2]uint64{2, 0})
			if err != nil {
				return err
			}
			in.setBlockPtr(indSlot+1, d)
			b, err := get([2]uint64{3, r / apb})
			if err != nil {
				return err
			}
			le.PutUint32(m.blocks[d][4*(r/apb):], b)
			slot, off = m.blocks[b], r%apb
		}
		p, err := m.alloc()
		if err != nil {
			return err
		}
		total++
		if slot == nil {
			in.setBlockPtr(int(l), p)
		} else {
			le.PutUint32(slot[4*off:], p)
		}
		if l == 0 {
			first = p
		}
	}
	in.setSize(uint64(n) * uint64(m.bs))
	in.set32(iBlocksLo, total*uint32(m.bs/512))
	m.blocks[first] = formatJournal(m.bs, n, sb.UUID)
	for i := 0; i < 15; i++ {
		sb.JnlBlocks[i] = in.blockPtr(i)
	}
	sb.JnlBlocks[15] = in.u32(iSizeHigh)
	sb.JnlBlocks[16] = in.u32(iSizeLo)
	return nil
}

// write stores everything: per-group bitmaps and counts, inode tables,
// superblock and GDT copies, and the collected metadata blocks.
func (m *mkfsState) write(dev Device) error {
	sb := m.sb
	var freeB, freeI uint32
	for g := range m.groups {
		d := &m.groups[g]
		fb, fi := uint32(0), uint32(0)
		for i := uint32(0); i < sb.groupBlocks(uint32(g)); i++ {
			if !testBit(m.bbm[g], i) {
				fb++
			}
		}
		for i := uint32(0); i < sb.InodesPerGroup; i++ {
			if !testBit(m.ibm[g], i) {
				fi++
			}
		}
		d.FreeBlocksCount, d.FreeInodesCount = uint16(fb), uint16(fi)
		freeB += fb
		freeI += fi
		m.blocks[d.BlockBitmap] = m.bbm[g]
		m.blocks[d.InodeBitmap] = m.ibm[g]
	}
	sb.FreeBlocksCount, sb.FreeInodesCount = freeB, freeI

	// Inode tables: zero them where the device is not zero already, then
	// put the special inodes in.
	for g := range m.groups {
		it := m.groups[g].InodeTable
		if err := zeroIfNeeded(dev, int64(it)*int64(m.bs), int64(m.itb)*int64(m.bs)); err != nil {
			return err
		}
	}
	for ino, raw := range m.inodes {
		g := (ino - 1) / sb.InodesPerGroup
		off := int64((ino-1)%sb.InodesPerGroup) * int64(m.isz)
		blk := m.groups[g].InodeTable + uint32(off/int64(m.bs))
		b := m.blocks[blk]
		if b == nil {
			b = make([]byte, m.bs)
			m.blocks[blk] = b
		}
		copy(b[off%int64(m.bs):], raw)
	}

	// Superblock and GDT in every group that carries a copy.
	gdt := make([]byte, int(sb.gdtBlocks())*m.bs)
	for g := range m.groups {
		m.groups[g].encode(gdt[g*groupDescSize:])
	}
	for g := uint32(0); g < sb.groupCount(); g++ {
		if !sb.groupHasSuper(g) {
			continue
		}
		start := sb.groupFirstBlock(g)
		sbBuf := make([]byte, m.bs)
		sb.BlockGroupNr = uint16(g)
		off := 0
		if g == 0 {
			off = superblockOffset - int(start)*m.bs
		}
		sb.encode(sbBuf[off:])
		m.blocks[start] = sbBuf
		for i := uint32(0); i < sb.gdtBlocks(); i++ {
			m.blocks[start+1+i] = gdt[int(i)*m.bs : int(i+1)*m.bs]
		}
		if g > 0 {
			for i := uint32(0); i < uint32(sb.ReservedGDTBlocks); i++ {
				m.blocks[start+1+sb.gdtBlocks()+i] = make([]byte, m.bs)
			}
		}
	}
	sb.BlockGroupNr = 0
	if sb.FirstDataBlock == 0 {
		// Block 0 also holds the boot sector area: keep it zero.
	}
	for nr, data := range m.blocks {
		if err := writeIfNeeded(dev, int64(nr)*int64(m.bs), data); err != nil {
			return err
		}
	}
	return dev.Sync()
}

// zeroChunk is made on first use: a package variable would be allocated in
// every husk process (each of its stages) and bring its first GC closer.
var zeroChunk = sync.OnceValue(func() []byte { return make([]byte, 1<<20) })

// zeroIfNeeded makes [off, off+n) zero, writing only chunks that are not.
func zeroIfNeeded(dev Device, off, n int64) error {
	buf := make([]byte, len(zeroChunk()))
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := dev.ReadAt(buf[:c], off); err != nil {
			return fmt.Errorf("ext3: mkfs: read at %d: %w", off, err)
		}
		if !bytes.Equal(buf[:c], zeroChunk()[:c]) {
			if _, err := dev.WriteAt(zeroChunk()[:c], off); err != nil {
				return fmt.Errorf("ext3: mkfs: write at %d: %w", off, err)
			}
		}
		off += c
		n -= c
	}
	return nil
}

// writeIfNeeded writes data unless it is all zero and the device already
// holds zeros there.
func writeIfNeeded(dev Device, off int64, data []byte) error {
	if bytes.Equal(data, zeroChunk()[:len(data)]) {
		return zeroIfNeeded(dev, off, int64(len(data)))
	}
	if _, err := dev.WriteAt(data, off); err != nil {
		return fmt.Errorf("ext3: mkfs: write at %d: %w", off, err)
	}
	return nil
}

// mkdirAll creates d.Path and its missing parents with d's mode and owner.
func (f *FS) mkdirAll(d MkfsDir) error {
	p := path.Clean("/" + d.Path)
	if p == "/" {
		return nil
	}
	dir := uint32(RootIno)
	for _, name := range strings.Split(p[1:], "/") {
		a, err := f.Lookup(dir, name)
		if err == syscall.ENOENT {
			a, err = f.Mkdir(dir, name, d.Mode, d.Uid, d.Gid)
		}
		if err != nil {
			return err
		}
		if a.Mode&sIFMT != sIFDIR {
			return syscall.ENOTDIR
		}
		dir = a.Ino
	}
	return nil
}
