// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import "errors"

// LZO1X decoding errors.
var (
	errLzoInput      = errors.New("input overrun")
	errLzoOutput     = errors.New("output overrun")
	errLzoLookbehind = errors.New("match distance before start of output")
	errLzoTrailing   = errors.New("input not consumed at end of stream")
	errLzoEnd        = errors.New("bad end-of-stream marker")
)

// lzo1xDecompress decodes one LZO1X stream (as written by liblzo's
// lzo1x_999 and lzo1x_1 compressors) into dst[:cap(dst)] and returns the
// filled prefix. It never writes past cap(dst) and never reads past src; a
// stream that tries to fails with an error.
//
// The bitstream, from the kernel's Documentation/staging/lzo.rst: each
// instruction byte t selects a literal run or a match; the low two bits of
// most match instructions ("next") give 0-3 literals that follow it, and
// "state" remembers how many literals preceded so that small t values
// (0-15) decode differently after a literal run (state 4) or after a short
// literal copy (states 1-3). The lzo-rle variant used by zram is not
// accepted: squashfs never writes it.
func lzo1xDecompress(dst, src []byte) ([]byte, error) {
	out := dst[:cap(dst)]
	limit := len(out)
	op, ip := 0, 0
	if len(src) < 3 {
		return nil, errLzoInput
	}

	// copyLits moves n literal bytes from input to output.
	copyLits := func(n int) error {
		if n > len(src)-ip {
			return errLzoInput
		}
		if n > limit-op {
			return errLzoOutput
		}
		copy(out[op:op+n], src[ip:ip+n])
		op += n
		ip += n
		return nil
	}
	// zeroRun reads a length extension: a run of zero bytes, each worth 255,
	// ended by a non-zero byte that is added as is.
	zeroRun := func() (int, error) {
		start := ip
		for ip < len(src) && src[ip] == 0 {
			ip++
		}
		if ip >= len(src) {
			return 0, errLzoInput
		}
		z := ip - start
		if z > limit/255+1 {
			return 0, errLzoOutput
		}
		b := int(src[ip])
		ip++
		return 255*z + b, nil
	}

	state := 0
	// A first byte above 17 encodes an initial literal run of t-17 bytes.
	if src[0] > 17 {
		t := int(src[0]) - 17
		ip = 1
		if err := copyLits(t); err != nil {
			return nil, err
		}
		state = 4
		if t < 4 {
			state = t
		}
	}

	for {
		if ip >= len(src) {
			return nil, errLzoInput
		}
		t := int(src[ip])
		ip++
		var dist, length, next int

		switch {
		case t < 16 && state == 0:
			// Literal run of t+3 bytes (t == 0: extended length).
			if t == 0 {
				ext, err := zeroRun()
				if err != nil {
					return nil, err
				}
				t = 15 + ext
			}
			if err := copyLits(t + 3); err != nil {
				return nil, err
			}
			state = 4
			continue

		case t < 16:
			if ip >= len(src) {
				return nil, errLzoInput
			}
			next = t & 3
			if state == 4 {
				// 3-byte match 2049..3072 bytes back, after a literal run.
				dist = 1 + 0x800 + t>>2 + int(src[ip])<<2
				length = 3
			} else {
				// 2-byte match up to 1024 bytes back, after 1-3 literals.
				dist = 1 + t>>2 + int(src[ip])<<2
				length = 2
			}
			ip++

		case t >= 64:
			// M2: 3-8 bytes, up to 2048 back.
			if ip >= len(src) {
				return nil, errLzoInput
			}
			next = t & 3
			dist = 1 + (t>>2)&7 + int(src[ip])<<3
			ip++
			length = t>>5 + 1

		case t >= 32:
			// M3: up to 16384 back.
			length = t&31 + 2
			if t&31 == 0 {
				ext, err := zeroRun()
				if err != nil {
					return nil, err
				}
				length = 2 + 31 + ext
			}
			if len(src)-ip < 2 {
				return nil, errLzoInput
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			dist = 1 + v>>2
			next = v & 3

		default:
			// M4 (16..31): 16385..49151 back; distance 16384 ends the stream.
			hi := (t & 8) << 11
			length = t&7 + 2
			if t&7 == 0 {
				ext, err := zeroRun()
				if err != nil {
					return nil, err
				}
				length = 2 + 7 + ext
			}
			if len(src)-ip < 2 {
				return nil, errLzoInput
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			next = v & 3
			dist = hi + v>>2
			if dist == 0 {
				switch {
				case length != 3:
					return nil, errLzoEnd
				case ip != len(src):
					return nil, errLzoTrailing
				}
				return out[:op], nil
			}
			dist += 0x4000
		}

		// Copy the match; overlapping copies repeat the pattern byte by byte.
		if dist > op {
			return nil, errLzoLookbehind
		}
		if length > limit-op {
			return nil, errLzoOutput
		}
		if dist >= length {
			copy(out[op:op+length], out[op-dist:])
		} else {
			for i := range length {
				out[op+i] = out[op-dist+i]
			}
		}
		op += length

		// The instruction's low bits carry 0-3 trailing literals.
		if err := copyLits(next); err != nil {
			return nil, err
		}
		state = next
	}
}
