// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import (
	"bytes"
	"errors"
	"testing"
)

// Full-block LZO decoding is checked end to end by the walk tests, which
// compare files compressed by mksquashfs -comp lzo (liblzo lzo1x_999) with
// their sources; these cases pin the decoder's edge behaviour.
func TestLZOHandMade(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		out  []byte
		err  error
	}{
		{"empty stream", []byte{0x11, 0, 0}, []byte{}, nil},
		// First byte 17+4: four literals, then the end marker.
		{"literals", []byte{21, 'a', 'b', 'c', 'd', 0x11, 0, 0}, []byte("abcd"), nil},
		// Literals then an M2 match: t=0x40|(distance-1)<<2, length 3 at
		// distance 1 repeats the last byte.
		{"overlapping match", []byte{21, 'a', 'b', 'c', 'd', 0x40, 0, 0x11, 0, 0},
			[]byte("abcdddd"), nil},
		{"match before start", []byte{21, 'a', 'b', 'c', 'd', 0x5c, 0x10, 0x11, 0, 0},
			nil, errLzoLookbehind},
		{"truncated literals", []byte{30, 'a', 'b'}, nil, errLzoInput},
		{"missing end", []byte{21, 'a', 'b', 'c', 'd'}, nil, errLzoInput},
		{"trailing bytes", []byte{0x11, 0, 0, 0}, nil, errLzoTrailing},
		{"too short", []byte{0x11}, nil, errLzoInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lzo1xDecompress(make([]byte, 0, 64), tc.in)
			if !errors.Is(err, tc.err) || !bytes.Equal(got, tc.out) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.out, tc.err)
			}
		})
	}
}

func TestLZOOutputBound(t *testing.T) {
	// 4 literals then a long M3 match (length 2+31+255*3+1) at distance 1.
	in := []byte{21, 'a', 'b', 'c', 'd', 0x20, 0, 0, 0, 1, 0, 0, 0x11, 0, 0}
	if _, err := lzo1xDecompress(make([]byte, 0, 100), in); !errors.Is(err, errLzoOutput) {
		t.Fatalf("err = %v, want output overrun", err)
	}
	out, err := lzo1xDecompress(make([]byte, 0, 1000), in)
	if err != nil || len(out) != 4+2+31+255*3+1 || out[len(out)-1] != 'd' {
		t.Fatalf("got %d bytes, %v", len(out), err)
	}
}
