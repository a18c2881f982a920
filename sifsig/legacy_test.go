// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"slices"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Legacy signatures of the SIF library's corpus verify, or fail, as with
// the integrity package, for each selection.
func TestVerifyLegacy(t *testing.T) {
	corpus, mallory := corpusKey(t), testKey(t, "mallory")
	legacy := func(group, object uint32) VerifyOptions {
		return VerifyOptions{Legacy: true, Group: group, Object: object}
	}
	all := VerifyOptions{Legacy: true, LegacyAll: true}
	for _, tc := range []struct {
		image    string
		o        VerifyOptions
		kr       openpgp.EntityList
		patch    func(b []byte, l layout)
		want     func(error) bool // nil: success
		verified []uint32         // with success: all objects verified
	}{
		// Linked to object 2, the primary partition.
		{image: "one-group-signed-legacy.sif", o: legacy(0, 2), verified: []uint32{2}},
		{image: "one-group-signed-legacy.sif", o: legacy(0, 2), kr: keyring(mallory),
			want: isSignatureError},
		{image: "one-group-signed-legacy.sif", o: legacy(0, 1), want: notSigned(1, false)},
		{image: "one-group-signed-legacy.sif", o: legacy(0, 0), want: notSigned(1, true)},
		{image: "one-group-signed-legacy.sif", o: all, want: notSigned(1, false)},
		{image: "one-group-signed-legacy.sif", o: VerifyOptions{}, want: notSigned(1, true)},
		{image: "one-group-signed-legacy.sif", o: legacy(0, 2),
			patch: func(b []byte, l layout) { b[l.data[2]] ^= 1 }, want: changed(PartData, 2)},
		// Legacy signatures cover no header field.
		{image: "one-group-signed-legacy.sif", o: legacy(0, 2),
			patch: func(b []byte, _ layout) { b[5] ^= 1 }, verified: []uint32{2}},

		// Linked to group 1.
		{image: "one-group-signed-legacy-group.sif", o: legacy(1, 0), verified: []uint32{1, 2}},
		{image: "one-group-signed-legacy-group.sif", o: legacy(0, 0), verified: []uint32{1, 2}},
		{image: "one-group-signed-legacy-group.sif", o: legacy(0, 2), want: notSigned(2, false)},
		{image: "one-group-signed-legacy-group.sif", o: VerifyOptions{Group: 1},
			want: notSigned(1, true)},
		{image: "one-group-signed-legacy-group.sif", o: legacy(1, 0),
			patch: func(b []byte, l layout) { b[l.data[1]] ^= 1 },
			want:  changed(PartGroupData, 1)},

		// Linked to each object; the signatures themselves are in group 1.
		{image: "one-group-signed-legacy-all.sif", o: all, verified: []uint32{1, 2}},
		{image: "one-group-signed-legacy-all.sif", o: legacy(0, 1), verified: []uint32{1}},
		{image: "one-group-signed-legacy-all.sif", o: all,
			patch: func(b []byte, l layout) { b[l.data[2]+1] ^= 1 }, want: changed(PartData, 2)},
		{image: "one-group-signed-legacy-all.sif", o: legacy(1, 0), want: notSigned(1, true)},

		// Group 2 is not signed.
		{image: "two-groups-signed-legacy-group.sif", o: legacy(1, 0), verified: []uint32{1, 2}},
		{image: "two-groups-signed-legacy-group.sif", o: legacy(2, 0), want: notSigned(2, true)},
		{image: "two-groups-signed-legacy-group.sif", o: legacy(0, 0), want: notSigned(2, true)},
	} {
		name := strings.TrimSuffix(tc.image, ".sif")
		t.Run(name, func(t *testing.T) {
			p := copyImage(t, tc.image)
			if tc.patch != nil {
				patch(t, p, tc.patch)
			}
			kr := tc.kr
			if kr == nil {
				kr = keyring(corpus)
			}
			err := bothVerify(t, p, kr, tc.o)
			if tc.want != nil {
				if !tc.want(err) {
					t.Fatalf("%+v: got %T %v", tc.o, err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%+v: %v", tc.o, err)
			}
			got, _ := sifsigVerify(t, p, kr, tc.o)
			var verified []uint32
			for _, r := range got {
				verified = append(verified, r.verified...)
			}
			if !slices.Equal(verified, tc.verified) {
				t.Errorf("%+v: verified %v, want %v", tc.o, verified, tc.verified)
			}
		})
	}
}
