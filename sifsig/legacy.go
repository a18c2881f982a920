// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"crypto"
	"io"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// checkLegacy compares the image with the legacy signature text of
// signature object sig, whose descriptor names hash h. A legacy signature
// covers object bytes only: headers and descriptors can change freely,
// which is why these are checked only on request.
func (t target) checkLegacy(f *sif.FileImage, sig uint32, text []byte, h crypto.Hash) (
	[]sif.Descriptor, error) {
	d, err := parseLegacyDigest(text, h)
	if err != nil {
		return nil, &SignatureError{ID: sig, Err: err}
	}

	if t.object != nil {
		ok, err := d.matches(t.object.GetReader())
		if err == nil && !ok {
			err = &ChangedError{Part: PartData, ID: t.object.ID()}
		}
		if err != nil {
			return nil, err
		}
		return []sif.Descriptor{*t.object}, nil
	}

	// A group signature hashes the group's objects end to end.
	ods, err := groupObjects(f, t.group)
	if err != nil {
		return nil, err
	}
	rs := make([]io.Reader, len(ods))
	for i, od := range ods {
		rs[i] = od.GetReader()
	}
	ok, err := d.matches(io.MultiReader(rs...))
	if err == nil && !ok {
		err = &ChangedError{Part: PartGroupData, ID: t.group}
	}
	if err != nil {
		return nil, err
	}
	return ods, nil
}
