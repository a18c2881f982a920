// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// Offsets in a SIF descriptor (SIF spec, sif.rawDescriptor): each is
// 585 bytes, little-endian, packed.
const (
	descrSize     = 585
	descrSizeOff  = 25  // int64 object size
	descrUIDOff   = 57  // int64 UID, integrity protected
	descrExtraOff = 201 // extra area: int32 hash type, then the fingerprint
)

// layout is where things of a test image sit in its file.
type layout struct {
	descrs int64 // the first descriptor
	data   map[uint32]int64
	sigs   []uint32 // signature object IDs
}

func layoutOf(t testing.TB, p string) layout {
	t.Helper()
	l := layout{data: map[uint32]int64{}}
	withImage(t, p, false, func(f *sif.FileImage) error {
		l.descrs = f.DescriptorsOffset()
		f.WithDescriptors(func(od sif.Descriptor) bool {
			l.data[od.ID()] = od.Offset()
			if od.DataType() == sif.DataSignature {
				l.sigs = append(l.sigs, od.ID())
			}
			return false
		})
		return nil
	})
	return l
}

// descr is the file offset of the descriptor of object id, which a fresh
// test image keeps in slot id-1.
func (l layout) descr(id uint32) int64 { return l.descrs + int64(id-1)*descrSize }

// patch applies fn to the bytes of the file p.
func patch(t testing.TB, p string, fn func(b []byte, l layout)) {
	t.Helper()
	l := layoutOf(t, p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fn(b, l)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipIn flips the low bit of the byte that follows the first text in
// b[off:]: a hex digit there stays a hex digit.
func flipIn(b []byte, off int64, text string) {
	i := bytes.Index(b[off:], []byte(text))
	b[off+int64(i)+int64(len(text))] ^= 0x01
}

// Tampering, wrong keys and damaged signatures fail with sifsig exactly
// where they fail with the integrity package, whichever made the
// signature, and sifsig names the problem.
func TestVerifyTampered(t *testing.T) {
	alice, mallory := testKey(t, "alice"), testKey(t, "mallory")
	for _, tc := range []struct {
		name  string
		kr    openpgp.EntityList
		opts  VerifyOptions
		patch func(b []byte, l layout)
		image func(t *testing.T, p string) // changes the image with the sif library
		want  func(err error) bool
		text  string // in the error message
	}{
		{name: "intact", kr: keyring(alice)},
		{name: "object data", kr: keyring(alice),
			patch: func(b []byte, l layout) { b[l.data[2]+3] ^= 0xff },
			want:  changed(PartData, 2), text: "object 2: data does not match its signature"},
		{name: "object data, other group", kr: keyring(alice), opts: VerifyOptions{Group: 1},
			patch: func(b []byte, l layout) { b[l.data[3]] ^= 0xff }},
		{name: "object data, chosen object", kr: keyring(alice), opts: VerifyOptions{Object: 3},
			patch: func(b []byte, l layout) { b[l.data[3]] ^= 0xff },
			want:  changed(PartData, 3)},
		{name: "descriptor", kr: keyring(alice),
			patch: func(b []byte, l layout) { b[l.descr(1)+descrUIDOff] ^= 0x01 },
			want:  changed(PartDescriptor, 1), text: "object 1: descriptor does not match"},
		{name: "header", kr: keyring(alice),
			patch: func(b []byte, _ layout) { b[5] ^= 0x01 },
			want:  changed(PartHeader, 0), text: "image header does not match"},
		{name: "foreign key", kr: keyring(mallory),
			want: isSignatureError, text: "signed by a key that is not in the keyring (its descriptor names"},
		{name: "no keys", kr: keyring(),
			want: isSignatureError, text: "signed by a key that is not in the keyring (its descriptor names"},
		{name: "both keys", kr: keyring(mallory, alice)},
		{name: "signed text", kr: keyring(alice),
			patch: func(b []byte, l layout) {
				flipIn(b, l.data[l.sigs[0]], `"objectDigest":"sha256:`)
			},
			want: isSignatureError},
		{name: "PGP signature bytes", kr: keyring(alice),
			patch: func(b []byte, l layout) {
				i := bytes.Index(b[l.data[l.sigs[0]]:], []byte("-----BEGIN PGP SIGNATURE-----"))
				b[l.data[l.sigs[0]]+int64(i)+40] ^= 0x01
			},
			want: isSignatureError},
		{name: "fingerprint in descriptor", kr: keyring(alice),
			patch: func(b []byte, l layout) { b[l.descr(l.sigs[0])+descrExtraOff+4] ^= 0x01 },
			want:  isSignatureError, text: "but its descriptor names key"},
		{name: "hash type in descriptor", kr: keyring(alice),
			patch: func(b []byte, l layout) { b[l.descr(l.sigs[0])+descrExtraOff] = 99 },
			want:  isSignatureError, text: "descriptor"},
		{name: "truncated signature", kr: keyring(alice),
			patch: func(b []byte, l layout) {
				off := l.descr(l.sigs[0]) + descrSizeOff
				size := binary.LittleEndian.Uint64(b[off:])
				binary.LittleEndian.PutUint64(b[off:], size/2)
			},
			want: isSignatureError, text: "damaged or truncated"},
		{name: "object added to group", kr: keyring(alice),
			image: func(t *testing.T, p string) {
				addObject(t, p, sif.DataGeneric, []byte("late"), sif.OptGroupID(1))
			},
			want: coverage(6, false), text: "object 6 is not covered by signature object 4"},
		{name: "object added, other object chosen", kr: keyring(alice),
			opts: VerifyOptions{Object: 2},
			image: func(t *testing.T, p string) {
				addObject(t, p, sif.DataGeneric, []byte("late"), sif.OptGroupID(1))
			}},
		{name: "object removed from group", kr: keyring(alice), opts: VerifyOptions{Group: 1},
			image: func(t *testing.T, p string) {
				withImage(t, p, true, func(f *sif.FileImage) error { return f.DeleteObject(2) })
			},
			want: coverage(2, true), text: "covers object 2, which is not in object group 1"},
		{name: "ungrouped object", kr: keyring(alice),
			image: func(t *testing.T, p string) {
				addObject(t, p, sif.DataGeneric, []byte("loose"), sif.OptNoGroup())
			},
			text: "is in no object group"},
		{name: "second signature by unknown key", kr: keyring(alice),
			image: func(t *testing.T, p string) {
				if err := sifsigSign(t, p, mallory, SignOptions{Group: 2}); err != nil {
					t.Fatal(err)
				}
			},
			want: isSignatureError, text: "not in the keyring"},
		{name: "garbage signature object", kr: keyring(alice),
			image: func(t *testing.T, p string) {
				addObject(t, p, sif.DataSignature, []byte("\x00\x01garbage"), sif.OptNoGroup(),
					sif.OptLinkedGroupID(1), sif.OptSignatureMetadata(crypto.SHA256, nil))
			},
			want: unsupported(""), text: "unknown format; husk verifies PGP signatures only"},
	} {
		for _, signer := range []string{"sifsig", "integrity"} {
			t.Run(tc.name+"/"+signer, func(t *testing.T) {
				p := makeImage(t, twoGroups)
				sign := signerNamed(signer)
				if err := sign(t, p, alice, SignOptions{}); err != nil {
					t.Fatal(err)
				}
				if tc.patch != nil {
					patch(t, p, tc.patch)
				}
				if tc.image != nil {
					tc.image(t, p)
				}
				err := bothVerify(t, p, tc.kr, tc.opts)
				switch {
				case tc.want == nil && tc.text == "":
					if err != nil {
						t.Fatalf("got %v, want success", err)
					}
				case err == nil:
					t.Fatal("verified")
				case tc.want != nil && !tc.want(err):
					t.Errorf("error %T %v is not the expected kind", err, err)
				}
				if err != nil && !strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q does not contain %q", err, tc.text)
				}
			})
		}
	}
}

func changed(part Part, id uint32) func(error) bool {
	return func(err error) bool {
		var ce *ChangedError
		return errors.As(err, &ce) && ce.Part == part && ce.ID == id
	}
}

func coverage(obj uint32, gone bool) func(error) bool {
	return func(err error) bool {
		var ce *CoverageError
		return errors.As(err, &ce) && ce.Object == obj && ce.Gone == gone
	}
}

func unsupported(format string) func(error) bool {
	return func(err error) bool {
		var ue *UnsupportedError
		return errors.As(err, &ue) && ue.Format == format
	}
}

func isSignatureError(err error) bool {
	var se *SignatureError
	return errors.As(err, &se)
}

func notSigned(id uint32, group bool) func(error) bool {
	return func(err error) bool {
		var ne *NotSignedError
		return errors.As(err, &ne) && ne.ID == id && ne.Group == group
	}
}

// addObject adds an object to the image at p.
func addObject(t testing.TB, p string, typ sif.DataType, data []byte,
	opts ...sif.DescriptorInputOpt) {
	t.Helper()
	di, err := sif.NewDescriptorInput(typ, bytes.NewReader(data), opts...)
	if err != nil {
		t.Fatal(err)
	}
	err = withImage(t, p, true, func(f *sif.FileImage) error { return f.AddObject(di) })
	if err != nil {
		t.Fatal(err)
	}
}

// Unsigned images and groups fail, naming the group or object.
func TestVerifyUnsigned(t *testing.T) {
	alice := testKey(t, "alice")
	p := makeImage(t, twoGroups)
	for _, tc := range []struct {
		o     VerifyOptions
		group uint32 // the group reported unsigned
	}{{VerifyOptions{}, 1}, {VerifyOptions{Group: 2}, 2}, {VerifyOptions{Object: 3}, 2}} {
		if err := bothVerify(t, p, keyring(alice), tc.o); !notSigned(tc.group, true)(err) {
			t.Errorf("%+v: %v", tc.o, err)
		}
	}
	if err := sifsigSign(t, p, alice, SignOptions{Group: 1}); err != nil {
		t.Fatal(err)
	}
	err := bothVerify(t, p, keyring(alice), VerifyOptions{})
	if !notSigned(2, true)(err) || err.Error() != "signature not found for object group 2" {
		t.Errorf("group 2 unsigned: %v", err)
	}
	for _, tc := range []struct {
		o    VerifyOptions
		want string
	}{
		{VerifyOptions{Group: 9}, "object group 9 not found"},
		{VerifyOptions{Group: 9, Legacy: true}, "object group 9 not found"},
		{VerifyOptions{Object: 9}, "object 9 not found"},
	} {
		_, err := sifsigVerify(t, p, keyring(alice), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}

// A signed document that verifies but is not one sifsig understands is
// refused with the reason. The version is not checked, as by the integrity
// package: another version or none verifies when the digests match.
func TestVerifyForgedMetadata(t *testing.T) {
	alice := testKey(t, "alice")
	good := func(t *testing.T, p string) []byte {
		var text []byte
		withImage(t, p, false, func(f *sif.FileImage) error {
			ods, _ := groupObjects(f, 1)
			m, err := describe(f, 1, ods, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			text, _ = json.Marshal(m)
			return nil
		})
		return text
	}
	for _, tc := range []struct {
		name   string
		edit   func(doc string) string
		text   string
		oracle bool // the integrity package accepts it
	}{
		{"as made", func(s string) string { return s }, "", true},
		{"version 2", func(s string) string {
			return strings.Replace(s, `"version":1`, `"version":2`, 1)
		}, "", true},
		{"no version", func(s string) string {
			return strings.Replace(s, `"version":1,`, ``, 1)
		}, "", true},
		{"not JSON", func(s string) string { return s[:len(s)/2] }, "metadata:", false},
		{"unknown hash", func(s string) string {
			return strings.Replace(s, `"digest":"sha256:`, `"digest":"md5:`, 1)
		}, `unknown hash "md5"`, false},
		{"short digest", func(s string) string {
			return strings.Replace(s, `"objectDigest":"sha256:`, `"objectDigest":"sha256:0`, 1)
		}, "value is not 32 hex bytes", false},
		{"no header", func(s string) string {
			i, j := strings.Index(s, `"header"`), strings.Index(s, `"objects"`)
			return s[:i] + s[j:]
		}, "no header digest", false},
		{"digest not a string", func(s string) string {
			return strings.Replace(s, `"digest":"sha256:`, `"digest":7,"x":"`, 1)
		}, "digest:", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makeImage(t, twoGroups[:2])
			doc := tc.edit(string(good(t, p)))
			msg, h, err := clearsignWith(alice, []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			addObject(t, p, sif.DataSignature, msg, sif.OptNoGroup(), sif.OptLinkedGroupID(1),
				sif.OptSignatureMetadata(h, alice.PrimaryKey.Fingerprint))
			_, err = sifsigVerify(t, p, keyring(alice), VerifyOptions{})
			_, oerr := oracleVerify(t, p, keyring(alice), VerifyOptions{})
			if (oerr == nil) != tc.oracle {
				t.Errorf("integrity package: %v", oerr)
			}
			if tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !isSignatureError(err) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want a SignatureError containing %q", err, tc.text)
			}
		})
	}
}

// A DSSE (sigstore) signature is refused by name.
func TestVerifyDSSE(t *testing.T) {
	p := copyImage(t, "one-group-signed-dsse.sif")
	_, err := sifsigVerify(t, p, keyring(corpusKey(t)), VerifyOptions{})
	if !unsupported("DSSE (sigstore)")(err) || err.Error() !=
		"signature object 3 is a DSSE (sigstore) signature; husk verifies PGP signatures only" {
		t.Fatalf("got %v", err)
	}
	// Legacy verification looks for other signatures and finds none.
	_, err = sifsigVerify(t, p, keyring(corpusKey(t)), VerifyOptions{Legacy: true, Group: 1})
	if !notSigned(1, true)(err) {
		t.Fatalf("legacy: got %v", err)
	}
}
