// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"crypto"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// metadataVersion is the version of the metadata document Sign writes.
const metadataVersion = 1

// metadata is the JSON document a (non-legacy) signature signs: what the
// image header and each signed object looked like when signed. The field
// names and their order are Apptainer's.
type metadata struct {
	Version int           `json:"version"`
	Header  headerEntry   `json:"header"`
	Objects []objectEntry `json:"objects"`
}

type headerEntry struct {
	Digest digest `json:"digest"`
}

// objectEntry describes one signed object. RelativeID is the object's ID
// minus the lowest object ID of its group.
type objectEntry struct {
	RelativeID uint32 `json:"relativeId"`
	Descriptor digest `json:"descriptorDigest"`
	Data       digest `json:"objectDigest"`
}

// groupBase is the lowest ID of any object in group, the origin of the
// relative IDs of that group's signatures.
func groupBase(f *sif.FileImage, group uint32) (uint32, error) {
	base := uint32(math.MaxUint32)
	f.WithDescriptors(func(od sif.Descriptor) bool {
		if od.GroupID() == group {
			base = min(base, od.ID())
		}
		return false
	})
	if base == math.MaxUint32 {
		return 0, fmt.Errorf("object group %d not found", group)
	}
	return base, nil
}

// describe builds the document for objects ods, all of group group, hashing
// with h.
func describe(f *sif.FileImage, group uint32, ods []sif.Descriptor, h crypto.Hash) (
	metadata, error) {
	base, err := groupBase(f, group)
	if err != nil {
		return metadata{}, err
	}
	m := metadata{Version: metadataVersion}
	if m.Header.Digest, err = digestOf(h, f.GetHeaderIntegrityReader()); err != nil {
		return metadata{}, err
	}
	for _, od := range ods {
		e := objectEntry{RelativeID: od.ID() - base}
		if e.Descriptor, err = digestOf(h, od.GetIntegrityReader()); err != nil {
			return metadata{}, err
		}
		if e.Data, err = digestOf(h, od.GetReader()); err != nil {
			return metadata{}, fmt.Errorf("object %d: %w", od.ID(), err)
		}
		m.Objects = append(m.Objects, e)
	}
	return m, nil
}

// parseMetadata decodes a signed document. Unknown fields are ignored, as
// JSON readers of this document always have, and so is the version:
// Apptainer's verifier (the integrity package) never reads it, so images
// it accepts with another version or none must verify here too. The
// digests are checked all the same, so a document of another meaning
// cannot match an image it does not describe.
func parseMetadata(b []byte) (metadata, error) {
	var m metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return metadata{}, fmt.Errorf("metadata: %w", err)
	}
	if m.Header.Digest.hash == 0 {
		return metadata{}, fmt.Errorf("metadata has no header digest")
	}
	for _, e := range m.Objects {
		if e.Descriptor.hash == 0 || e.Data.hash == 0 {
			return metadata{}, fmt.Errorf("metadata entry of relative ID %d lacks a digest",
				e.RelativeID)
		}
	}
	return m, nil
}

// entry returns the document's entry for object id of a group whose lowest
// object ID is base. The first entry wins if a document lists an object
// twice.
func (m *metadata) entry(base, id uint32) (objectEntry, bool) {
	for _, e := range m.Objects {
		if base+e.RelativeID == id {
			return e, true
		}
	}
	return objectEntry{}, false
}

// check compares the image with the document signed by signature object
// sig: the header, then each object of ods in turn. It returns the objects
// that matched before the first difference. With whole set, the document
// must list exactly the objects ods (a whole group), so that an object
// added to the group after signing, or one removed, fails the check.
func (m *metadata) check(f *sif.FileImage, sig uint32, group uint32, ods []sif.Descriptor,
	whole bool) ([]sif.Descriptor, error) {
	base, err := groupBase(f, group)
	if err != nil {
		return nil, err
	}
	if whole {
		if err := m.coversExactly(sig, group, base, ods); err != nil {
			return nil, err
		}
	}

	ok, err := m.Header.Digest.matches(f.GetHeaderIntegrityReader())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &ChangedError{Part: PartHeader}
	}
	var verified []sif.Descriptor
	for _, od := range ods {
		e, found := m.entry(base, od.ID())
		if !found {
			return verified, &CoverageError{Signature: sig, Object: od.ID()}
		}
		if err := e.matches(od); err != nil {
			return verified, err
		}
		verified = append(verified, od)
	}
	return verified, nil
}

// coversExactly checks that the document lists the objects ods and no
// other.
func (m *metadata) coversExactly(sig, group, base uint32, ods []sif.Descriptor) error {
	listed := map[uint32]bool{}
	for _, e := range m.Objects {
		listed[base+e.RelativeID] = true
	}
	for _, od := range ods {
		if !listed[od.ID()] {
			return &CoverageError{Signature: sig, Object: od.ID()}
		}
		delete(listed, od.ID())
	}
	if len(listed) > 0 {
		id := slices.Min(slices.Collect(maps.Keys(listed)))
		return &CoverageError{Signature: sig, Object: id, Group: group, Gone: true}
	}
	return nil
}

// matches compares object od with its entry: descriptor first, then data.
func (e objectEntry) matches(od sif.Descriptor) error {
	ok, err := e.Descriptor.matches(od.GetIntegrityReader())
	if err == nil && !ok {
		err = &ChangedError{Part: PartDescriptor, ID: od.ID()}
	}
	if err != nil {
		return err
	}
	ok, err = e.Data.matches(od.GetReader())
	if err == nil && !ok {
		err = &ChangedError{Part: PartData, ID: od.ID()}
	}
	return err
}
