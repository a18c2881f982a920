package ext3

import (
	"syscall"
)

// Hashed (htree) directories, read side plus in-place leaf inserts.
// Layout (Documentation/filesystems/ext4/directory.rst, "Hash Tree
// Directories"): block 0 holds "." and a ".." entry whose rec_len covers
// the block, followed by dx_root_info and an array of dx_entry {hash,
// block}; the first entry's hash slot holds {limit, count}. Interior
// nodes are blocks with one empty dirent covering the block, followed by
// the same {limit, count} array. Leaves are ordinary directory blocks, so
// a linear reader sees every name.

// Hash versions (dx_root_info.hash_version; +3 for the unsigned variants).
const (
	hashLegacy  = 0
	hashHalfMD4 = 1
	hashTea     = 2
	hashUnsign  = 3
)

func (f *FS) isIndexed(in *inode) bool {
	return in.flags()&flIndex != 0 && f.sb.has(compatDirIndex)
}

// dxHash computes the major hash of name as the kernel's ext4fs_dirhash.
func (f *FS) dxHash(name string, version uint8) uint32 {
	unsigned := version >= hashUnsign
	ch := func(i int) uint32 {
		if unsigned {
			return uint32(name[i])
		}
		return uint32(int32(int8(name[i])))
	}
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if s := f.sb.HashSeed; s != [4]uint32{} {
		buf = s
	}
	var hash uint32
	switch version % hashUnsign {
	case hashLegacy:
		h0, h1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
		for i := range len(name) {
			h := h1 + (h0 ^ ch(i)*7152373)
			if h&0x80000000 != 0 {
				h -= 0x7fffffff
			}
			h1, h0 = h0, h
		}
		hash = h0 << 1
	case hashHalfMD4:
		for p := 0; p < len(name) || p == 0; p += 32 {
			var in [8]uint32
			strToHashBuf(name[p:], in[:], ch, p)
			halfMD4(&buf, &in)
			if p+32 >= len(name) {
				break
			}
		}
		hash = buf[1]
	case hashTea:
		for p := 0; p < len(name) || p == 0; p += 16 {
			var in [4]uint32
			strToHashBuf(name[p:], in[:], ch, p)
			teaTransform(&buf, &in)
			if p+16 >= len(name) {
				break
			}
		}
		hash = buf[0]
	}
	hash &^= 1
	if hash == 0x7fffffff<<1 {
		hash = (0x7fffffff - 1) << 1
	}
	return hash
}

// strToHashBuf packs a name chunk into words as the kernel's str2hashbuf:
// padding derived from the remaining length, 4 characters per word.
func strToHashBuf(msg string, out []uint32, ch func(int) uint32, base int) {
	n := len(msg)
	pad := uint32(n) | uint32(n)<<8
	pad |= pad << 16
	val := pad
	num := len(out)
	if n > num*4 {
		n = num * 4
	}
	k := 0
	for i := 0; i < n; i++ {
		val = ch(base+i) + val<<8
		if i%4 == 3 {
			out[k] = val
			k++
			val = pad
			num--
		}
	}
	if num--; num >= 0 {
		out[k] = val
		k++
	}
	for num--; num >= 0; num-- {
		out[k] = pad
		k++
	}
}

func rol(x uint32, s uint) uint32 { return x<<s | x>>(32-s) }

func halfMD4(buf *[4]uint32, in *[8]uint32) {
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	F := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	G := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	H := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 013240474631, 015666365641
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s uint) {
		*a = rol(*a+fn(b, c, d)+x, s)
	}
	r(F, &a, b, c, d, in[0], 3)
	r(F, &d, a, b, c, in[1], 7)
	r(F, &c, d, a, b, in[2], 11)
	r(F, &b, c, d, a, in[3], 19)
	r(F, &a, b, c, d, in[4], 3)
	r(F, &d, a, b, c, in[5], 7)
	r(F, &c, d, a, b, in[6], 11)
	r(F, &b, c, d, a, in[7], 19)

	r(G, &a, b, c, d, in[1]+k2, 3)
	r(G, &d, a, b, c, in[3]+k2, 5)
	r(G, &c, d, a, b, in[5]+k2, 9)
	r(G, &b, c, d, a, in[7]+k2, 13)
	r(G, &a, b, c, d, in[0]+k2, 3)
	r(G, &d, a, b, c, in[2]+k2, 5)
	r(G, &c, d, a, b, in[4]+k2, 9)
	r(G, &b, c, d, a, in[6]+k2, 13)

	r(H, &a, b, c, d, in[3]+k3, 3)
	r(H, &d, a, b, c, in[7]+k3, 9)
	r(H, &c, d, a, b, in[2]+k3, 11)
	r(H, &b, c, d, a, in[6]+k3, 15)
	r(H, &a, b, c, d, in[1]+k3, 3)
	r(H, &d, a, b, c, in[5]+k3, 9)
	r(H, &c, d, a, b, in[0]+k3, 11)
	r(H, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

func teaTransform(buf *[4]uint32, in *[4]uint32) {
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for n := 0; n < 16; n++ {
		sum += 0x9E3779B9
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}

// htreeLeaf returns the logical block of the leaf that holds (or would
// hold) name, like the kernel's dx_probe.
// Preconditions: in.mu held.
func (f *FS) htreeLeaf(in *inode, name string) (uint64, error) {
	lblk, _, err := f.htreeProbe(in, name)
	return lblk, err
}

// htreeProbe also returns the hash of the entry after the chosen one at
// the last level (0 if none), used to follow hash-collision chains.
func (f *FS) htreeProbe(in *inode, name string) (uint64, uint32, error) {
	path, err := f.htreePath(in, name)
	if err != nil {
		return 0, 0, err
	}
	return path.leaf, path.next, nil
}

// htreeLookup finds name through the index, following a collision chain
// into the next leaf when the following index hash continues ours.
func (f *FS) htreeLookup(in *inode, name string) (uint32, uint8, error) {
	lblk, next, err := f.htreeProbe(in, name)
	if err != nil {
		return 0, 0, err
	}
	for tries := 0; tries < 2; tries++ {
		b, p, err := f.dirBlock(in, lblk)
		if err != nil {
			return 0, 0, err
		}
		if b == nil {
			return 0, 0, corrupt("htree", 0, in.ino, "leaf %d is a hole", lblk)
		}
		var ino uint32
		var ft uint8
		err = f.walkBlock(in.ino, p, b.data, func(e dent) bool {
			if e.ino != 0 && string(e.name) == name {
				ino, ft = e.ino, e.ft
				return false
			}
			return true
		})
		f.cache.put(b)
		if err != nil || ino != 0 {
			return ino, ft, err
		}
		if next&1 == 0 {
			break
		}
		// Collision continuation: rare; fall back to the linear scan.
		return 0, 0, corrupt("htree", 0, in.ino, "collision chain")
	}
	return 0, 0, syscall.ENOENT
}
