// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"crypto"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// Signatures made by sifsig and by the integrity package verify with
// both, for every selection, with the same objects verified.
func TestSignCrossCheck(t *testing.T) {
	alice := testKey(t, "alice")
	kr := keyring(alice)
	for _, tc := range []struct {
		name   string
		sign   SignOptions
		verify []VerifyOptions // each must pass
		fail   []VerifyOptions // each must fail
	}{
		{"all groups", SignOptions{},
			[]VerifyOptions{{}, {Group: 1}, {Group: 2}, {Object: 2}, {Object: 3}}, nil},
		{"group 1", SignOptions{Group: 1},
			[]VerifyOptions{{Group: 1}, {Object: 1}}, []VerifyOptions{{}, {Group: 2}}},
		{"group 2", SignOptions{Group: 2},
			[]VerifyOptions{{Group: 2}, {Object: 3}}, []VerifyOptions{{}, {Object: 1}}},
		{"object 2", SignOptions{Object: 2},
			[]VerifyOptions{{Object: 2}}, []VerifyOptions{{}, {Group: 1}, {Object: 1}}},
		{"group 2 and object 1", SignOptions{Group: 2, Object: 1},
			[]VerifyOptions{{Group: 2}, {Object: 1}}, []VerifyOptions{{}, {Object: 2}}},
	} {
		for _, signer := range []string{"sifsig", "integrity"} {
			t.Run(tc.name+"/"+signer, func(t *testing.T) {
				p := makeImage(t, twoGroups)
				sign := signerNamed(signer)
				if err := sign(t, p, alice, tc.sign); err != nil {
					t.Fatal(err)
				}
				for _, o := range tc.verify {
					if err := bothVerify(t, p, kr, o); err != nil {
						t.Errorf("verify %+v: %v", o, err)
					}
				}
				for _, o := range tc.fail {
					if err := bothVerify(t, p, kr, o); err == nil {
						t.Errorf("verify %+v passed", o)
					}
				}
			})
		}
	}
}

// The signature object sifsig adds has the layout Apptainer's has: no
// group, linked to the group, SHA-256 and the signer's fingerprint in the
// descriptor, and the same JSON document as the integrity package's,
// field for field (the PGP signatures differ, they are salted).
func TestSignLayout(t *testing.T) {
	alice := testKey(t, "alice")
	ours, theirs := makeImage(t, twoGroups), makeImage(t, twoGroups)
	if err := sifsigSign(t, ours, alice, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := oracleSign(t, theirs, alice, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	type sigInfo struct {
		group, link uint32
		isGroup     bool
		hash        crypto.Hash
		fp          []byte
		text        string
	}
	read := func(p string) (infos []sigInfo) {
		withImage(t, p, false, func(f *sif.FileImage) error {
			sigs, err := f.GetDescriptors(sif.WithDataType(sif.DataSignature))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sigs {
				h, fp, err := s.SignatureMetadata()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := s.GetData()
				blk, _ := clearsign.Decode(b)
				if blk == nil {
					t.Fatalf("%s: signature %d is not clear-signed", p, s.ID())
				}
				link, isGroup := s.LinkedID()
				infos = append(infos, sigInfo{s.GroupID(), link, isGroup, h, fp,
					string(blk.Plaintext)})
			}
			return nil
		})
		return infos
	}
	got, want := read(ours), read(theirs)
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("signatures: sifsig %d, integrity %d, want 2", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.group != 0 || g.link != w.link || !g.isGroup || g.hash != w.hash ||
			!bytes.Equal(g.fp, alice.PrimaryKey.Fingerprint) || !bytes.Equal(g.fp, w.fp) {
			t.Errorf("signature %d: sifsig %+v, integrity %+v", i, g, w)
		}
		// The documents differ only in the header digest, which covers
		// the image ID, random per image.
		var gm, wm map[string]any
		if json.Unmarshal([]byte(g.text), &gm) != nil ||
			json.Unmarshal([]byte(w.text), &wm) != nil {
			t.Fatalf("documents: %s / %s", g.text, w.text)
		}
		delete(gm, "header")
		delete(wm, "header")
		gj, _ := json.Marshal(gm)
		wj, _ := json.Marshal(wm)
		if !bytes.Equal(gj, wj) || !strings.Contains(g.text, `"header":{"digest":"sha256:`) {
			t.Errorf("signature %d document:\n sifsig    %s\n integrity %s", i, g.text, w.text)
		}
	}
}

// Sign refuses what it cannot sign, naming the problem, and leaves the
// image unsigned.
func TestSignErrors(t *testing.T) {
	alice := testKey(t, "alice")
	v6, err := openpgp.NewEntity("v6", "", "v6@example.org", &packet.Config{V6Keys: true})
	if err != nil {
		t.Fatal(err)
	}
	locked := testKey(t, "locked")
	if err := locked.EncryptPrivateKeys([]byte("pw"), nil); err != nil {
		t.Fatal(err)
	}
	pubOnly := &openpgp.Entity{PrimaryKey: alice.PrimaryKey}
	for _, tc := range []struct {
		name string
		objs []object
		e    *openpgp.Entity
		o    SignOptions
		want string
	}{
		{"no such group", twoGroups, alice, SignOptions{Group: 7}, "object group 7 not found"},
		{"no such object", twoGroups, alice, SignOptions{Object: 9}, "object 9 not found"},
		{"ungrouped object", []object{{1, sif.DataGeneric, "a"}, {0, sif.DataGeneric, "b"}},
			alice, SignOptions{Object: 2}, "object 2 is in no object group"},
		{"no groups", []object{{0, sif.DataGeneric, "b"}}, alice, SignOptions{},
			"no object groups"},
		{"public key only", twoGroups, pubOnly, SignOptions{}, "no private key"},
		{"v6 key", twoGroups, v6, SignOptions{}, "20-byte (v4) fingerprint only"},
		{"locked key", twoGroups, locked, SignOptions{}, "encrypted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makeImage(t, tc.objs)
			err := sifsigSign(t, p, tc.e, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			withImage(t, p, false, func(f *sif.FileImage) error {
				sigs, _ := f.GetDescriptors(sif.WithDataType(sif.DataSignature))
				if len(sigs) > 0 {
					t.Errorf("%d signatures added", len(sigs))
				}
				return nil
			})
		})
	}
}
