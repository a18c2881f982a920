// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// memFile is an image in memory, so that each fuzz input gets a fresh one
// cheaply.
type memFile struct {
	b   []byte
	off int64
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) Write(p []byte) (int, error) {
	if end := m.off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[m.off:], p)
	m.off += int64(len(p))
	return len(p), nil
}

func (m *memFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += m.off
	case io.SeekEnd:
		off += int64(len(m.b))
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	m.off = off
	return off, nil
}

func (m *memFile) Truncate(n int64) error {
	if n < int64(len(m.b)) {
		m.b = m.b[:n]
	} else {
		m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	}
	return nil
}

// FuzzSignatureObject feeds arbitrary bytes to Verify as the data of a
// signature object linked to group 1, in every mode, and to the parsers
// of signed text directly (a random input almost never carries a valid
// PGP signature, so they would otherwise go unexercised). Nothing may
// panic, and nothing but a real signature may verify.
func FuzzSignatureObject(f *testing.F) {
	key := corpusKey(f)
	p := makeImage(f, twoGroups[:2])
	base, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	// A copy keeps the image ID, so that its signature verifies on base.
	signed := p + ".signed"
	if err := os.WriteFile(signed, base, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := sifsigSign(f, signed, key, SignOptions{}); err != nil {
		f.Fatal(err)
	}
	corpus := []string{"one-group-signed-legacy-group.sif", "one-group-signed-dsse.sif"}
	for _, name := range corpus {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[40960:])
	}
	b, _ := os.ReadFile(signed)
	l := layoutOf(f, signed)
	sigData := b[l.data[l.sigs[0]]:]
	f.Add(sigData)
	f.Add([]byte(`{"version":1,"header":{"digest":"sha256:00"},"objects":[]}`))
	f.Add([]byte("SIFHASH:\n0123"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := parseMetadata(data); err == nil {
			m.entry(1, 2)
		}
		parseLegacyDigest(data, crypto.SHA384)
		formatOf(data)

		mf := &memFile{b: bytes.Clone(base)}
		img, err := sif.LoadContainer(mf)
		if err != nil {
			t.Fatal(err)
		}
		di, err := sif.NewDescriptorInput(sif.DataSignature, bytes.NewReader(data),
			sif.OptNoGroup(), sif.OptLinkedGroupID(1),
			sif.OptSignatureMetadata(crypto.SHA256, key.PrimaryKey.Fingerprint))
		if err != nil {
			t.Fatal(err)
		}
		if err := img.AddObject(di); err != nil {
			t.Skip(err) // an empty object, say
		}
		for _, o := range []VerifyOptions{{}, {Object: 2}, {Legacy: true},
			{Legacy: true, LegacyAll: true}} {
			err := Verify(img, keyring(key), o)
			if real := bytes.Equal(data, sigData); !o.Legacy && (err == nil) != real {
				t.Errorf("%+v: the signature made by Sign: %v; verified: %v", o, real, err)
			}
		}
	})
}
