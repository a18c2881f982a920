// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// VerifyOptions selects what [Verify] checks. With Group, Object and
// LegacyAll unset, it checks every object group.
type VerifyOptions struct {
	// Group checks this object group: its signatures must cover all of
	// its objects.
	Group uint32
	// Object checks this object: the signatures of its group must cover
	// it (a legacy one must be linked to the object itself).
	Object uint32
	// Legacy checks legacy signatures instead of the current ones.
	Legacy bool
	// LegacyAll, with Legacy, also checks each grouped object that is not
	// a signature, on its own.
	LegacyAll bool
	// Result, if set, is called with the outcome of each signature checked,
	// before Verify returns that signature's error.
	Result func(Result)
}

// Result is the outcome of checking one signature object.
type Result struct {
	Signature sif.Descriptor
	// Signer is the key's entity that made the signature, or nil if that
	// could not be established.
	Signer *openpgp.Entity
	// Verified are the objects found to match the signature, in check
	// order; with Err set, those checked before the failure.
	Verified []sif.Descriptor
	Err      error
}

// target is one group or object Verify must find signed.
type target struct {
	group  uint32          // the group whose signatures are checked (0 for a legacy object)
	object *sif.Descriptor // only this object of group, or the legacy-signed object
	legacy bool
}

// Verify checks the signatures o selects in f with the public keys of kr.
// Every signature linked to a selected group or object must be valid and
// match the image, and there must be at least one for each. It stops at
// the first failure and returns it: a [NotSignedError], [SignatureError],
// [ChangedError], [CoverageError] or [UnsupportedError], or an error about
// a malformed image.
func Verify(f *sif.FileImage, kr openpgp.KeyRing, o VerifyOptions) error {
	targets, err := verifyTargets(f, o)
	if err != nil {
		return err
	}
	// Apptainer's rule: an object outside every group could be changed
	// without breaking any signature, so such an image fails outright.
	var loose error
	f.WithDescriptors(func(od sif.Descriptor) bool {
		if od.GroupID() == 0 && od.DataType() != sif.DataSignature {
			loose = fmt.Errorf("object %d (%v) is in no object group, so no signature covers it",
				od.ID(), od.DataType())
		}
		return loose != nil
	})
	if loose != nil {
		return loose
	}

	for _, t := range targets {
		if err := t.verify(f, kr, o.Result); err != nil {
			return err
		}
	}
	return nil
}

// verifyTargets lists what o selects: groups first, then objects, each in
// ascending ID order.
func verifyTargets(f *sif.FileImage, o VerifyOptions) ([]target, error) {
	var groups, objects []uint32
	if o.Group != 0 {
		groups = append(groups, o.Group)
	}
	if o.Object != 0 {
		objects = append(objects, o.Object)
	}
	if o.Legacy && o.LegacyAll {
		f.WithDescriptors(func(od sif.Descriptor) bool {
			if od.DataType() != sif.DataSignature && od.GroupID() != 0 {
				objects = append(objects, od.ID())
			}
			return false
		})
	}
	if len(groups) == 0 && len(objects) == 0 {
		var err error
		if groups, err = groupIDs(f); err != nil {
			return nil, err
		}
	}
	slices.Sort(objects)
	objects = slices.Compact(objects)

	var targets []target
	for _, g := range groups {
		if _, err := groupObjects(f, g); err != nil {
			return nil, err
		}
		targets = append(targets, target{group: g, legacy: o.Legacy})
	}
	for _, id := range objects {
		od, err := objectByID(f, id)
		if err != nil {
			return nil, err
		}
		t := target{group: od.GroupID(), object: &od, legacy: o.Legacy}
		if o.Legacy {
			t.group = 0
		} else if t.group == 0 {
			return nil, fmt.Errorf("object %d is in no object group, so no signature covers it",
				id)
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// verify checks every signature of t, reporting each to report.
func (t target) verify(f *sif.FileImage, kr openpgp.KeyRing, report func(Result)) error {
	sigs, err := t.signatures(f)
	if err != nil {
		return err
	}
	for _, s := range sigs {
		r, err := t.check(f, kr, s)
		if err != nil {
			return err
		}
		if report != nil {
			report(r)
		}
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// signed is a signature object with its data.
type signed struct {
	od   sif.Descriptor
	data []byte
	kind format
}

// signatures returns t's signatures of the wanted kind: linked to the
// group and legacy or not as t.legacy, or, for a legacy object, all of
// those linked to the object.
func (t target) signatures(f *sif.FileImage) ([]signed, error) {
	sel := sif.WithLinkedGroupID(t.group)
	if t.group == 0 {
		sel = sif.WithLinkedID(t.object.ID())
	}
	ods, err := f.GetDescriptors(sif.WithDataType(sif.DataSignature), sel)
	if err != nil {
		return nil, err
	}
	var sigs []signed
	for _, od := range ods {
		b, err := readSignature(od)
		if err != nil {
			return nil, err
		}
		kind := formatOf(b)
		if t.group != 0 && (kind == formatLegacy) != t.legacy {
			continue
		}
		sigs = append(sigs, signed{od, b, kind})
	}
	if len(sigs) == 0 {
		if t.group == 0 {
			return nil, &NotSignedError{ID: t.object.ID()}
		}
		return nil, &NotSignedError{ID: t.group, Group: true}
	}
	return sigs, nil
}

// check checks one signature of t. A signature this package cannot check
// at all is an error, not a Result: there is no signer or object to
// report.
func (t target) check(f *sif.FileImage, kr openpgp.KeyRing, s signed) (Result, error) {
	switch s.kind {
	case formatDSSE:
		return Result{}, &UnsupportedError{ID: s.od.ID(), Format: "DSSE (sigstore)"}
	case formatUnknown:
		return Result{}, &UnsupportedError{ID: s.od.ID()}
	case formatBrokenPGP:
		return Result{}, &SignatureError{ID: s.od.ID(),
			Err: errors.New("clear-signed message is damaged or truncated")}
	}
	r := Result{Signature: s.od}
	h, fp, err := s.od.SignatureMetadata()
	if err != nil {
		r.Err = &SignatureError{ID: s.od.ID(), Err: fmt.Errorf("descriptor: %w", err)}
		return r, nil
	}
	text, signer, err := openClearsigned(kr, s.od.ID(), s.data, fp)
	r.Signer = signer
	if err != nil {
		r.Err = err
		return r, nil
	}
	if t.legacy {
		r.Verified, r.Err = t.checkLegacy(f, s.od.ID(), text, h)
	} else {
		r.Verified, r.Err = t.checkMetadata(f, s.od.ID(), text)
	}
	return r, nil
}

// checkMetadata compares the image with the signed document text.
func (t target) checkMetadata(f *sif.FileImage, sig uint32, text []byte) (
	[]sif.Descriptor, error) {
	m, err := parseMetadata(text)
	if err != nil {
		return nil, &SignatureError{ID: sig, Err: err}
	}
	if t.object != nil {
		return m.check(f, sig, t.group, []sif.Descriptor{*t.object}, false)
	}
	ods, err := groupObjects(f, t.group)
	if err != nil {
		return nil, err
	}
	return m.check(f, sig, t.group, ods, true)
}
