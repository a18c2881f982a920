package overlay

import (
	"fmt"
	"log/slog"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/ext3"
)

// Info is what `husk overlay info` shows. JSON names are stable.
type Info struct {
	Path string `json:"path"`
	// Kind is "ext3" for a bare image, "SIF" for a SIF's partition.
	Kind        string `json:"kind"`
	PartitionID uint32 `json:"partition_id,omitempty"`
	Offset      int64  `json:"offset"`
	// Size is the bytes the image or partition spans; FSSize those the
	// file system uses (BlockSize x Blocks).
	Size           int64    `json:"size"`
	FSSize         int64    `json:"fs_size"`
	BlockSize      uint32   `json:"block_size"`
	Blocks         uint64   `json:"blocks"`
	UsedBlocks     uint64   `json:"used_blocks"`
	FreeBlocks     uint64   `json:"free_blocks"`
	ReservedBlocks uint64   `json:"reserved_blocks"`
	Inodes         uint64   `json:"inodes"`
	UsedInodes     uint64   `json:"used_inodes"`
	FreeInodes     uint64   `json:"free_inodes"`
	InodeSize      uint32   `json:"inode_size"`
	Groups         uint32   `json:"groups"`
	ReservedGDT    uint32   `json:"reserved_gdt_blocks"`
	Features       string   `json:"features"`
	Label          string   `json:"label"`
	UUID           string   `json:"uuid"`
	Journal        *Journal `json:"journal,omitempty"`
	// State is "clean", "in use" (mounted, or not closed after a crash),
	// or "needs recovery" (the journal must be replayed).
	State     string `json:"state"`
	HasErrors bool   `json:"has_errors"`
	HasUpper  bool   `json:"has_upper"`
	HasWork   bool   `json:"has_work"`
}

// Journal describes an internal journal.
type Journal struct {
	Blocks uint32 `json:"blocks"`
	Bytes  int64  `json:"bytes"`
	// State is "clean" (empty log) or "needs recovery".
	State string `json:"state"`
}

// Describe reads the overlay at path without writing to it. It takes the
// read lock other husk processes honour, so an overlay being written by a
// running container is refused rather than shown half-written.
func Describe(path string, log *slog.Logger) (*Info, error) {
	sweepTemps(path) // a killed create's staging file; best effort
	img, sec, err := openOverlay(path, false)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if err := image.Lock(img, sec, false, log); err != nil {
		return nil, err
	}
	s, err := ext3.Describe(ext3.NewSection(img.File, sec.Offset, sec.Size), sec.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", img.Path, err)
	}
	u := s.UUID
	in := &Info{
		Path: img.Path, Kind: img.Kind.String(), PartitionID: sec.ID, Offset: sec.Offset,
		Size: sec.Size, FSSize: int64(s.Blocks) * int64(s.BlockSize), BlockSize: s.BlockSize,
		Blocks: s.Blocks, UsedBlocks: s.Blocks - s.FreeBlocks, FreeBlocks: s.FreeBlocks,
		ReservedBlocks: s.ReservedBlocks, Inodes: s.Inodes, UsedInodes: s.Inodes - s.FreeInodes,
		FreeInodes: s.FreeInodes, InodeSize: s.InodeSize, Groups: s.Groups,
		ReservedGDT: s.ReservedGDTBlocks, Features: s.Features, Label: s.Label,
		UUID:      fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
		HasErrors: s.HasErrors, HasUpper: s.HasUpper, HasWork: s.HasWork, State: "clean",
	}
	if s.InUse {
		in.State = "in use"
	}
	if s.NeedsRecovery {
		in.State = "needs recovery"
	}
	if s.Journal != "none" {
		in.Journal = &Journal{Blocks: s.JournalBlocks,
			Bytes: int64(s.JournalBlocks) * int64(s.BlockSize), State: "clean"}
		if s.NeedsRecovery {
			in.Journal.State = "needs recovery"
		}
	}
	return in, nil
}
