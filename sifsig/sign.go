// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"cmp"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// fingerprintSize is the room a Signature descriptor has for the signing
// key's fingerprint that readers use: the size of a v4 fingerprint.
const fingerprintSize = 20

// SignOptions selects what [Sign] signs. With both fields zero, it signs
// every object group.
type SignOptions struct {
	Group  uint32 // sign this whole object group
	Object uint32 // sign this object alone, in a signature linked to its group
}

// plan is one signature to add: objects ods, all of group group.
type plan struct {
	group uint32
	ods   []sif.Descriptor
}

// Sign adds signatures by e to f, one per object group selected by o, and
// writes them to f's backing file. e's primary private key must be
// decrypted. The signatures hold metadata hashed with SHA-256 and are
// signed with SHA-256, as Apptainer's.
func Sign(f *sif.FileImage, e *openpgp.Entity, o SignOptions) error {
	if e == nil || e.PrimaryKey == nil || e.PrivateKey == nil {
		return errors.New("no private key to sign with")
	}
	fp := e.PrimaryKey.Fingerprint
	if len(fp) != fingerprintSize {
		return fmt.Errorf("key %X: a SIF signature holds a %d-byte (v4) fingerprint only",
			fp, fingerprintSize)
	}
	plans, err := signPlans(f, o)
	if err != nil {
		return err
	}
	for _, p := range plans {
		// In ID order, so that the document lists them as Apptainer's does.
		slices.SortFunc(p.ods, func(a, b sif.Descriptor) int {
			return cmp.Compare(a.ID(), b.ID())
		})
		if err := addSignature(f, e, p); err != nil {
			return fmt.Errorf("object group %d: %w", p.group, err)
		}
	}
	return nil
}

// signPlans lists the signatures o asks for: the group, then the object's
// group with only that object, else one per group in ID order.
func signPlans(f *sif.FileImage, o SignOptions) ([]plan, error) {
	var plans []plan
	if o.Group != 0 {
		ods, err := groupObjects(f, o.Group)
		if err != nil {
			return nil, err
		}
		plans = append(plans, plan{o.Group, ods})
	}
	if o.Object != 0 {
		od, err := objectByID(f, o.Object)
		if err != nil {
			return nil, err
		}
		if od.GroupID() == 0 {
			return nil, fmt.Errorf("object %d is in no object group, so it cannot be signed",
				o.Object)
		}
		plans = append(plans, plan{od.GroupID(), []sif.Descriptor{od}})
	}
	if len(plans) > 0 {
		return plans, nil
	}
	groups, err := groupIDs(f)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		ods, err := groupObjects(f, g)
		if err != nil {
			return nil, err
		}
		plans = append(plans, plan{g, ods})
	}
	return plans, nil
}

// addSignature signs the objects of p and adds the Signature object. The
// document is made only now, after earlier signatures were added, although
// adding one changes nothing another covers: the header fields signed are
// fixed at creation, and a signature joins no group.
func addSignature(f *sif.FileImage, e *openpgp.Entity, p plan) error {
	m, err := describe(f, p.group, p.ods, crypto.SHA256)
	if err != nil {
		return err
	}
	text, err := json.Marshal(m)
	if err != nil {
		return err
	}
	msg, h, err := clearsignWith(e, text)
	if err != nil {
		return err
	}
	in, err := sif.NewDescriptorInput(sif.DataSignature, bytes.NewReader(msg),
		sif.OptNoGroup(),
		sif.OptLinkedGroupID(p.group),
		sif.OptSignatureMetadata(h, e.PrimaryKey.Fingerprint))
	if err != nil {
		return err
	}
	return f.AddObject(in)
}

// groupObjects returns the objects of group in descriptor order, the order
// a legacy group digest covers them in.
func groupObjects(f *sif.FileImage, group uint32) ([]sif.Descriptor, error) {
	ods, err := f.GetDescriptors(sif.WithGroupID(group))
	if err == nil && len(ods) == 0 {
		err = fmt.Errorf("object group %d not found", group)
	}
	if err != nil {
		return nil, err
	}
	return ods, nil
}

// objectByID returns the descriptor of object id.
func objectByID(f *sif.FileImage, id uint32) (sif.Descriptor, error) {
	od, err := f.GetDescriptor(sif.WithID(id))
	if errors.Is(err, sif.ErrObjectNotFound) {
		return od, fmt.Errorf("object %d not found", id)
	}
	if err != nil {
		return od, fmt.Errorf("object %d: %w", id, err)
	}
	return od, nil
}

// groupIDs returns the IDs of f's object groups in ascending order.
func groupIDs(f *sif.FileImage) ([]uint32, error) {
	var ids []uint32
	f.WithDescriptors(func(od sif.Descriptor) bool {
		if g := od.GroupID(); g != 0 && !slices.Contains(ids, g) {
			ids = append(ids, g)
		}
		return false
	})
	if len(ids) == 0 {
		return nil, errors.New("image has no object groups")
	}
	slices.Sort(ids)
	return ids, nil
}
