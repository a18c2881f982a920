package ext3

import (
	"errors"
	"fmt"
)

// Summary is Info plus what `husk overlay info` shows about an image that
// is not open: the journal's state and the overlay directories.
type Summary struct {
	Info
	// JournalBlocks is the journal's size in blocks (0 without one).
	JournalBlocks uint32
	// NeedsRecovery is set when the journal holds committed transactions
	// not yet replayed; the counts then come from the superblock alone
	// (which may lag) and the directories are not looked at.
	NeedsRecovery bool
	// InUse is set when the image is marked mounted (needs_recovery, or
	// not cleanly unmounted without a journal): in use now, or not closed
	// after a crash.
	InUse bool
	// HasErrors is s_state's errors bit.
	HasErrors bool
	// Groups is the number of block groups; ReservedGDTBlocks how many GDT
	// blocks are kept for growth.
	Groups, ReservedGDTBlocks uint32
	// HasUpper and HasWork say whether /upper and /work are directories.
	HasUpper, HasWork bool
}

// Describe reads the file system on dev without writing to it.
func Describe(dev Device, size int64) (*Summary, error) {
	f, err := Open(dev, size, Options{ReadOnly: true})
	if errors.Is(err, ErrNeedsRecovery) {
		return describeRaw(dev, size)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &Summary{Info: f.Info(), JournalBlocks: f.jnlBlocks}
	s.fromSuper(f.sb)
	for _, d := range []struct {
		name string
		has  *bool
	}{{"upper", &s.HasUpper}, {"work", &s.HasWork}} {
		a, err := f.Lookup(RootIno, d.name)
		*d.has = err == nil && a.Mode&sIFMT == sIFDIR
	}
	return s, nil
}

func (s *Summary) fromSuper(sb *superblock) {
	if sb.has(compatHasJournal) {
		s.InUse = sb.FeatureIncompat&incompatRecover != 0
	} else {
		s.InUse = sb.State&stateValid == 0
	}
	s.HasErrors = sb.State&stateErrors != 0
	s.Groups = sb.groupCount()
	s.ReservedGDTBlocks = uint32(sb.ReservedGDTBlocks)
}

// describeRaw summarises an image whose journal needs replaying from its
// superblock, which a read-only Open refuses to trust further.
func describeRaw(dev Device, size int64) (*Summary, error) {
	raw := make([]byte, superblockSize)
	if _, err := dev.ReadAt(raw, superblockOffset); err != nil {
		return nil, fmt.Errorf("ext3: read superblock: %w", err)
	}
	sb := decodeSuperblock(raw)
	if err := sb.validate(size); err != nil {
		return nil, err
	}
	s := &Summary{NeedsRecovery: true, Info: Info{
		Size: size, BlockSize: uint32(sb.blockSize()), Blocks: uint64(sb.BlocksCount),
		FreeBlocks: uint64(sb.FreeBlocksCount), Inodes: uint64(sb.InodesCount),
		FreeInodes: uint64(sb.FreeInodesCount), InodeSize: uint32(sb.inodeSize()),
		Features: sb.featureString(), Journal: "internal", Label: sb.label(), UUID: sb.UUID,
		ReadOnly: true, MountCount: sb.MntCount, ReservedBlocks: uint64(sb.RBlocksCount),
	}}
	// s_jnl_blocks[16] is the journal inode's i_size (low 32 bits).
	if sb.JnlBackupType == 1 {
		s.JournalBlocks = sb.JnlBlocks[16] / uint32(sb.blockSize())
	}
	s.fromSuper(sb)
	return s, nil
}
