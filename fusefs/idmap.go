package fusefs

import (
	"context"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// overflowID is what an id with no mapping becomes, in either direction, as
// the kernel does for unmapped ids in a user namespace (nobody/nogroup).
const overflowID = 65534

// mapID translates id through ranges. toServer picks the direction:
// container to server (attributes sent to the kernel) or back (callers and
// chown arguments). Empty ranges mean identity.
func mapID(ranges []IDRange, id uint32, toServer bool) uint32 {
	if m, ok := lookupID(ranges, id, toServer); ok {
		return m
	}
	return overflowID
}

// lookupID is mapID that reports whether id has a mapping.
func lookupID(ranges []IDRange, id uint32, toServer bool) (uint32, bool) {
	if len(ranges) == 0 {
		return id, true
	}
	for _, r := range ranges {
		from, to := r.Container, r.Server
		if !toServer {
			from, to = r.Server, r.Container
		}
		if id >= from && id-from < r.Size {
			return to + (id - from), true
		}
	}
	return 0, false
}

// uidToServer and friends apply the union's IDMap.
func (m *IDMap) uidToServer(id uint32) uint32    { return m.toServer(m.UIDs, id) }
func (m *IDMap) gidToServer(id uint32) uint32    { return m.toServer(m.GIDs, id) }
func (m *IDMap) uidToContainer(id uint32) uint32 { return mapID(m.UIDs, id, false) }
func (m *IDMap) gidToContainer(id uint32) uint32 { return mapID(m.GIDs, id, false) }

// toServer maps a container id for the kernel, squashing unmapped ids
// to the first range's server id when asked to.
func (m *IDMap) toServer(ranges []IDRange, id uint32) uint32 {
	if s, ok := lookupID(ranges, id, true); ok {
		return s
	}
	if m.Squash {
		return ranges[0].Server
	}
	return overflowID
}

// caller returns the requesting process's uid and gid in the container's
// view. Requests without a caller (internal ones) act as root.
func (m *IDMap) caller(ctx context.Context) (uid, gid uint32) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return 0, 0
	}
	return m.uidToContainer(c.Uid), m.gidToContainer(c.Gid)
}
