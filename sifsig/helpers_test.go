// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/integrity"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// The tests use the SIF library's integrity package, which Apptainer
// verifies and signs with, as the oracle: what sifsig signs it must accept,
// and what it signs sifsig must accept, with the same objects verified.

// testKey makes a fresh v4 PGP key.
func testKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "sifsig test", name+"@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// corpusKey is the key that signed the images in testdata.
func corpusKey(t testing.TB) *openpgp.Entity {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "private.asc"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	el, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil || len(el) != 1 {
		t.Fatalf("testdata/private.asc: %d keys, %v", len(el), err)
	}
	return el[0]
}

// object is one object of a test image.
type object struct {
	group uint32 // 0: no group
	typ   sif.DataType
	data  string
}

// twoGroups is the usual test layout: objects 1 and 2 in group 1 (2 the
// primary partition), object 3 in group 2.
var twoGroups = []object{
	{1, sif.DataGeneric, "one"},
	{1, sif.DataPartition, "squashfs bytes"},
	{2, sif.DataGeneric, "three"},
}

// makeImage writes a SIF holding objs and returns its path.
func makeImage(t testing.TB, objs []object) string {
	t.Helper()
	var dis []sif.DescriptorInput
	for _, o := range objs {
		opts := []sif.DescriptorInputOpt{sif.OptGroupID(o.group)}
		if o.group == 0 {
			opts = []sif.DescriptorInputOpt{sif.OptNoGroup()}
		}
		if o.typ == sif.DataPartition {
			opts = append(opts, sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, "amd64"))
		}
		di, err := sif.NewDescriptorInput(o.typ, bytes.NewReader([]byte(o.data)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		dis = append(dis, di)
	}
	p := filepath.Join(t.TempDir(), "test.sif")
	f, err := sif.CreateContainerAtPath(p, sif.OptCreateWithDescriptors(dis...))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyImage copies a testdata image to a temporary file.
func copyImage(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// withImage opens path, read-write if rw, for fn.
func withImage(t testing.TB, path string, rw bool, fn func(f *sif.FileImage) error) error {
	t.Helper()
	var opts []sif.LoadOpt
	if !rw {
		opts = append(opts, sif.OptLoadWithFlag(os.O_RDONLY))
	}
	f, err := sif.LoadContainerFromPath(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	err = fn(f)
	if uerr := f.UnloadContainer(); uerr != nil {
		t.Fatal(uerr)
	}
	return err
}

func sifsigSign(t testing.TB, path string, e *openpgp.Entity, o SignOptions) error {
	t.Helper()
	return withImage(t, path, true, func(f *sif.FileImage) error { return Sign(f, e, o) })
}

// outcome is what a verifier reported for one signature: the signature's
// object ID, the verified object IDs, and whether it failed.
type outcome struct {
	sig      uint32
	verified []uint32
	failed   bool
}

func ids(ods []sif.Descriptor) []uint32 {
	var r []uint32
	for _, od := range ods {
		r = append(r, od.ID())
	}
	return r
}

func sifsigVerify(t testing.TB, path string, kr openpgp.KeyRing, o VerifyOptions) (
	[]outcome, error) {
	t.Helper()
	var got []outcome
	o.Result = func(r Result) {
		got = append(got, outcome{r.Signature.ID(), ids(r.Verified), r.Err != nil})
	}
	err := withImage(t, path, false, func(f *sif.FileImage) error { return Verify(f, kr, o) })
	return got, err
}

// oracleVerify verifies with the integrity package, with options matching
// o's.
func oracleVerify(t testing.TB, path string, kr openpgp.KeyRing, o VerifyOptions) (
	[]outcome, error) {
	t.Helper()
	var got []outcome
	opts := []integrity.VerifierOpt{
		integrity.OptVerifyWithKeyRing(kr),
		integrity.OptVerifyCallback(func(r integrity.VerifyResult) bool {
			got = append(got, outcome{r.Signature().ID(), ids(r.Verified()), r.Error() != nil})
			return false
		}),
	}
	if o.Group != 0 {
		opts = append(opts, integrity.OptVerifyGroup(o.Group))
	}
	if o.Object != 0 {
		opts = append(opts, integrity.OptVerifyObject(o.Object))
	}
	if o.LegacyAll {
		opts = append(opts, integrity.OptVerifyLegacyAll())
	} else if o.Legacy {
		opts = append(opts, integrity.OptVerifyLegacy())
	}
	err := withImage(t, path, false, func(f *sif.FileImage) error {
		v, err := integrity.NewVerifier(f, opts...)
		if err != nil {
			return err
		}
		return v.Verify()
	})
	return got, err
}

// signerNamed is sifsigSign or, for "integrity", oracleSign.
func signerNamed(name string) func(testing.TB, string, *openpgp.Entity, SignOptions) error {
	if name == "integrity" {
		return oracleSign
	}
	return sifsigSign
}

func oracleSign(t testing.TB, path string, e *openpgp.Entity, o SignOptions) error {
	t.Helper()
	opts := []integrity.SignerOpt{integrity.OptSignWithEntity(e)}
	if o.Group != 0 {
		opts = append(opts, integrity.OptSignGroup(o.Group))
	}
	if o.Object != 0 {
		opts = append(opts, integrity.OptSignObjects(o.Object))
	}
	return withImage(t, path, true, func(f *sif.FileImage) error {
		s, err := integrity.NewSigner(f, opts...)
		if err != nil {
			return err
		}
		return s.Sign()
	})
}

// bothVerify verifies path with sifsig and the oracle, fails the test if
// they disagree on success or on any signature's outcome, and returns
// sifsig's error.
func bothVerify(t testing.TB, path string, kr openpgp.KeyRing, o VerifyOptions) error {
	t.Helper()
	got, err := sifsigVerify(t, path, kr, o)
	want, oerr := oracleVerify(t, path, kr, o)
	if (err == nil) != (oerr == nil) {
		t.Fatalf("sifsig says %v, the integrity package %v", err, oerr)
	}
	if !slices.EqualFunc(got, want, func(a, b outcome) bool {
		return a.sig == b.sig && a.failed == b.failed && slices.Equal(a.verified, b.verified)
	}) {
		t.Errorf("results: sifsig %+v, integrity package %+v", got, want)
	}
	return err
}

// keyring makes a keyring of es.
func keyring(es ...*openpgp.Entity) openpgp.EntityList { return es }
