// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import "fmt"

// NotSignedError reports an object group or object that Verify was asked
// to check but that no signature of the kind wanted is linked to.
type NotSignedError struct {
	ID    uint32 // group or object ID
	Group bool   // ID is a group ID
}

func (e *NotSignedError) Error() string {
	if e.Group {
		return fmt.Sprintf("signature not found for object group %d", e.ID)
	}
	return fmt.Sprintf("signature not found for object %d", e.ID)
}

// SignatureError reports a signature object that cannot be trusted: its
// PGP signature does not verify, its signer is not in the keyring or is
// not the key its descriptor names, or its text is not a document this
// package understands.
type SignatureError struct {
	ID  uint32 // signature object ID
	Err error
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("signature object %d: %v", e.ID, e.Err)
}

func (e *SignatureError) Unwrap() error { return e.Err }

// Part names what a [ChangedError] found changed.
type Part int

const (
	// PartHeader is the global header's signed fields (launch script,
	// magic, version, image ID).
	PartHeader Part = iota + 1
	// PartDescriptor is the signed fields of one object's descriptor.
	PartDescriptor
	// PartData is one object's bytes.
	PartData
	// PartGroupData is the bytes of a whole group, which a legacy group
	// signature covers with one digest: which object changed is unknown.
	PartGroupData
)

// ChangedError reports that the image no longer matches a valid
// signature: something was changed after signing.
type ChangedError struct {
	Part Part
	ID   uint32 // the object (PartDescriptor, PartData) or group (PartGroupData)
}

func (e *ChangedError) Error() string {
	switch e.Part {
	case PartHeader:
		return "image header does not match its signature"
	case PartDescriptor:
		return fmt.Sprintf("object %d: descriptor does not match its signature", e.ID)
	case PartData:
		return fmt.Sprintf("object %d: data does not match its signature", e.ID)
	default:
		return fmt.Sprintf("object group %d: data does not match its signature", e.ID)
	}
}

// CoverageError reports a signature that does not cover what it must: an
// object of the group (or the object asked for) that it does not list, or,
// with Gone, an object it lists that is no longer in the group.
type CoverageError struct {
	Signature uint32 // signature object ID
	Object    uint32
	Group     uint32 // with Gone: the group the signature is linked to
	Gone      bool
}

func (e *CoverageError) Error() string {
	if e.Gone {
		return fmt.Sprintf("signature object %d covers object %d, which is not in object group %d",
			e.Signature, e.Object, e.Group)
	}
	return fmt.Sprintf("object %d is not covered by signature object %d", e.Object, e.Signature)
}

// UnsupportedError reports a signature object this package recognises but
// cannot check, or does not recognise at all.
type UnsupportedError struct {
	ID     uint32 // signature object ID
	Format string // "DSSE (sigstore)", or "" when unrecognised
}

func (e *UnsupportedError) Error() string {
	if e.Format == "" {
		return fmt.Sprintf("signature object %d is in an unknown format; "+
			"husk verifies PGP signatures only", e.ID)
	}
	return fmt.Sprintf("signature object %d is a %s signature; husk verifies PGP signatures only",
		e.ID, e.Format)
}
