package fusefs

import (
	"log/slog"
	"time"

	"github.com/husk-project/husk/internal/procs"
)

// Options configure a [Union]. Lowers are ordered top first; Upper, when
// set, sits above all of them.
type Options struct {
	// Upper is the writable layer; nil makes a read-only union.
	Upper Writable
	// WorkDir is a directory of Upper, outside the tree the union serves,
	// where copy-ups are assembled before they are renamed into place.
	// Zero means none: copy-ups are then written in place (not atomic).
	WorkDir Node
	// Lowers are the read-only layers, top first.
	Lowers []Layer
	// IDMap translates owners between the container and the FUSE server.
	IDMap IDMap
	// AllowOther lets users other than the mounting one use the mount.
	AllowOther bool
	// DirectMount mounts with mount(2) only (DirectMountStrict), as needed
	// inside a user namespace without fusermount.
	DirectMount bool
	// Debug logs every FUSE request through go-fuse's debug output.
	Debug bool
	// Logger receives warnings about layer errors; nil discards them.
	Logger *slog.Logger
	// OnLayerError, if set, is called with each layer failure that names
	// its image, before the kernel gets the EIO it becomes (so a caller
	// can report which image is damaged ahead of the failing request). It
	// returns true when it has taken the report to the user, and then the
	// union does not log it.
	OnLayerError func(*LayerError) bool
	// EntryTimeout and AttrTimeout are the kernel cache lifetimes; zero
	// means [DefaultTimeout]. The union is the only writer of its layers,
	// and every change it makes goes through the kernel, so long timeouts
	// are safe.
	EntryTimeout, AttrTimeout time.Duration
	// Load, if set, counts the requests the server handles, for
	// procs.Govern to size the Go scheduler to (see package procs).
	Load *procs.Load
}

// DefaultTimeout is the entry, attribute and negative-entry timeout used
// when Options leave them zero.
const DefaultTimeout = time.Hour

// IDRange maps Size consecutive ids starting at Container (as stored in the
// layers and seen inside the container) to ids starting at Server (as the
// FUSE server's user namespace sees them).
type IDRange struct {
	Container, Server, Size uint32
}

// IDMap holds the uid and gid ranges. Empty lists mean identity.
//
// Container ids outside the ranges are reported to the kernel as 65534.
// Inside a user namespace that does not map 65534 the kernel cannot
// represent that owner, and refuses to remove or rename such files
// (EOVERFLOW, see may_delete in fs/namei.c). Squash reports them as the
// first range's server id instead (the user, in the rootless layout), as
// Apptainer does with squashfuse's uid=/gid= options; what is stored in
// the layers does not change.
type IDMap struct {
	UIDs, GIDs []IDRange
	Squash     bool
}
