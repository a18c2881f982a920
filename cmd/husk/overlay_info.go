package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/husk-project/husk/cmd/internal/overlay"
)

// OverlayResizeCmd is `husk overlay resize IMAGE SIZE`.
type OverlayResizeCmd struct {
	Force bool   `help:"Grow even if the image is marked in use (not closed after a crash)."`
	Image string `arg:"" help:"Overlay image, or SIF whose overlay partition is its last object."`
	Size  string `arg:"" help:"New size in MiB, or with a suffix: 2048, 2048M, 2G."`
}

// Help implements kong.HelpProvider.
func (OverlayResizeCmd) Help() string {
	return `Grows the ext3 file system of an overlay image, or of a SIF's overlay
partition, to SIZE, without e2fsck or resize2fs. Only growing is possible.
A SIF's overlay can grow only when it is the last object in the file. The
image must not be in use (husk locks it like --overlay does).

Examples:
  husk overlay resize o.img 2G
  husk overlay resize debian.sif 1024`
}

// Run implements `husk overlay resize`.
func (c *OverlayResizeCmd) Run(g *globals) error {
	mib, err := overlay.ParseSizeMiB(c.Size)
	if err != nil {
		return err
	}
	res, err := overlay.Resize(c.Image, mib, c.Force, g.Log)
	if err != nil {
		return err
	}
	if res.Trimmed {
		g.info(fmt.Sprintf("The overlay in %s is already %d MiB; its file, left larger "+
			"by an interrupted resize, is now that size too", c.Image, res.NewSize>>20))
		return nil
	}
	g.info(fmt.Sprintf("Grew the overlay in %s from %d MiB to %d MiB (%d to %d block groups)",
		c.Image, res.OldSize>>20, res.NewSize>>20, res.OldGroups, res.NewGroups))
	return nil
}

// OverlayInfoCmd is `husk overlay info IMAGE`.
type OverlayInfoCmd struct {
	JSON  bool   `name:"json" help:"Print JSON."`
	Image string `arg:"" help:"Overlay image, or SIF with an overlay partition."`
}

// Help implements kong.HelpProvider.
func (OverlayInfoCmd) Help() string {
	return `Shows an overlay's size, block and inode usage, features, journal state,
label and UUID, and whether it has the upper/ and work/ directories.

Examples:
  husk overlay info o.img
  husk overlay info --json debian.sif`
}

// Run implements `husk overlay info`.
func (c *OverlayInfoCmd) Run(g *globals) error {
	in, err := overlay.Describe(c.Image, g.Log)
	if err != nil {
		return err
	}
	if c.JSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(in)
	}
	printOverlayInfo(os.Stdout, in)
	return nil
}

func printOverlayInfo(w io.Writer, in *overlay.Info) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	where := in.Path
	if in.Kind == "SIF" {
		where = fmt.Sprintf("%s, partition %d at offset %d", in.Path, in.PartitionID, in.Offset)
	}
	pct := func(a, b uint64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	journal := "none"
	if j := in.Journal; j != nil {
		journal = fmt.Sprintf("%s, %d blocks (%d MiB)", j.State, j.Blocks, j.Bytes>>20)
	}
	state := in.State
	if in.HasErrors {
		state += ", errors recorded"
	}
	rows := [][2]string{
		{"Image", where},
		{"Size", fmt.Sprintf("%d MiB (file system %d MiB)", in.Size>>20, in.FSSize>>20)},
		{"Block size", fmt.Sprint(in.BlockSize)},
		{"Blocks", fmt.Sprintf("%d used, %d free of %d (%.1f%% used), %d reserved",
			in.UsedBlocks, in.FreeBlocks, in.Blocks, pct(in.UsedBlocks, in.Blocks),
			in.ReservedBlocks)},
		{"Inodes", fmt.Sprintf("%d used, %d free of %d, %d bytes each", in.UsedInodes,
			in.FreeInodes, in.Inodes, in.InodeSize)},
		{"Block groups", fmt.Sprintf("%d (%d reserved GDT blocks)", in.Groups, in.ReservedGDT)},
		{"Features", in.Features},
		{"Journal", journal},
		{"State", state},
		{"Label", in.Label},
		{"UUID", in.UUID},
		{"upper/", yes(in.HasUpper)},
		{"work/", yes(in.HasWork)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-14s %s\n", r[0]+":", strings.TrimSpace(r[1]))
	}
}
