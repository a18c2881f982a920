package ext3

import (
	"bytes"
	"slices"
	"syscall"
)

// POSIX ACLs. The xattr interface uses the posix_acl_xattr format (version
// 2, 8-byte entries); ext2/3/4 store them in their own compact format
// (version 1, 4-byte entries for the owner, group, mask and other tags,
// 8-byte entries for named users and groups). See fs/ext4/acl.h.

const (
	aclXattrVersion = 2
	aclDiskVersion  = 1
	aclUserObj      = 0x01
	aclUser         = 0x02
	aclGroupObj     = 0x04
	aclGroup        = 0x08
	aclMask         = 0x10
	aclOther        = 0x20
)

func aclToDisk(v []byte) ([]byte, error) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || le.Uint32(v) != aclXattrVersion {
		return nil, syscall.EINVAL
	}
	out := le.AppendUint32(nil, aclDiskVersion)
	for off := 4; off < len(v); off += 8 {
		tag, perm, id := le.Uint16(v[off:]), le.Uint16(v[off+2:]), le.Uint32(v[off+4:])
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, perm)
		switch tag {
		case aclUser, aclGroup:
			out = le.AppendUint32(out, id)
		case aclUserObj, aclGroupObj, aclMask, aclOther:
		default:
			return nil, syscall.EINVAL
		}
	}
	return out, nil
}

func aclFromDisk(v []byte, ino uint32) ([]byte, error) {
	out := le.AppendUint32(nil, aclXattrVersion)
	err := diskACLEntries(v, ino, func(tag uint16, off int) {
		id := uint32(0xffffffff) // ACL_UNDEFINED_ID
		if tag == aclUser || tag == aclGroup {
			id = le.Uint32(v[off+4:])
		}
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, le.Uint16(v[off+2:]))
		out = le.AppendUint32(out, id)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// diskACLEntries checks the on-disk ACL v and calls fn with each entry's
// tag and offset: permissions at off+2, a named entry's id at off+4.
func diskACLEntries(v []byte, ino uint32, fn func(tag uint16, off int)) error {
	if len(v) < 4 || le.Uint32(v) != aclDiskVersion {
		return corrupt("acl", 0, ino, "bad header")
	}
	for off := 4; off < len(v); {
		if off+4 > len(v) {
			return corrupt("acl", 0, ino, "truncated entry")
		}
		tag, n := le.Uint16(v[off:]), 4
		switch tag {
		case aclUser, aclGroup:
			if n = 8; off+8 > len(v) {
				return corrupt("acl", 0, ino, "truncated entry")
			}
		case aclUserObj, aclGroupObj, aclMask, aclOther:
		default:
			return corrupt("acl", 0, ino, "tag 0x%x", tag)
		}
		fn(tag, off)
		off += n
	}
	return nil
}

// chmodACL brings the access ACL of in, if it has one, in line with the
// permission bits mode, as the kernel's chmod does (posix_acl_chmod): the
// owner's entry, the mask (the owning group's when there is no mask) and
// other's take mode's three classes. Left as it was, the ACL would go on
// granting what a chmod took away wherever the kernel mounts the image
// (the FUSE union does not use ACLs itself).
// Preconditions: in.mu held exclusively, op held shared.
func (f *FS) chmodACL(in *inode, mode uint32) error {
	body, block, err := f.readXattrs(in)
	if err != nil {
		return err
	}
	all := append(body, block...)
	for i, x := range all {
		if x.index != 2 || x.name != "" {
			continue
		}
		v, err := aclChmod(x.value, mode, in.ino)
		if err != nil {
			return err
		}
		if aclMinimal(v) {
			// The mode says it all: the kernel drops such an ACL
			// (posix_acl_update_mode), and so does husk.
			return f.storeXattrs(in, slices.Delete(all, i, i+1))
		}
		if bytes.Equal(v, x.value) {
			return nil
		}
		all[i].value = v
		return f.storeXattrs(in, all)
	}
	return nil
}

// aclMinimal says whether the valid on-disk ACL v holds only the owner,
// owning group and other entries, which the mode bits alone express.
func aclMinimal(v []byte) bool {
	minimal := true
	diskACLEntries(v, 0, func(tag uint16, off int) {
		minimal = minimal && (tag == aclUserObj || tag == aclGroupObj || tag == aclOther)
	})
	return minimal
}

// aclChmod returns the on-disk access ACL v with mode's classes set.
func aclChmod(v []byte, mode uint32, ino uint32) ([]byte, error) {
	var perms []int // offsets of the entries' permissions, by tag below
	var tags []uint16
	err := diskACLEntries(v, ino, func(tag uint16, off int) {
		tags, perms = append(tags, tag), append(perms, off+2)
	})
	if err != nil {
		return nil, err
	}
	hasMask := slices.Contains(tags, aclMask)
	if !hasMask && !slices.Contains(tags, aclGroupObj) {
		// Nowhere to put the group class; the kernel says EIO too.
		return nil, corrupt("acl", 0, ino, "no mask and no owning group entry")
	}
	out := bytes.Clone(v)
	for i, tag := range tags {
		switch {
		case tag == aclUserObj:
			le.PutUint16(out[perms[i]:], uint16(mode>>6&7))
		case tag == aclMask, tag == aclGroupObj && !hasMask:
			le.PutUint16(out[perms[i]:], uint16(mode>>3&7))
		case tag == aclOther:
			le.PutUint16(out[perms[i]:], uint16(mode&7))
		}
	}
	return out, nil
}
