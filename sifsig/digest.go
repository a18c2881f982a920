// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"crypto"
	_ "crypto/sha256" // registers SHA-224 and SHA-256 with package crypto
	_ "crypto/sha512" // registers SHA-384, SHA-512 and its truncations
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// hashNames are the hashes a digest may name, with the spelling the
// metadata document uses. The list is closed on purpose: Apptainer's
// verifier rejects any other name, so accepting more here would let husk
// pass images Apptainer fails.
var hashNames = []struct {
	hash crypto.Hash
	name string
}{
	{crypto.SHA224, "sha224"},
	{crypto.SHA256, "sha256"},
	{crypto.SHA384, "sha384"},
	{crypto.SHA512, "sha512"},
	{crypto.SHA512_224, "sha512_224"},
	{crypto.SHA512_256, "sha512_256"},
}

// hashName is the document's name for h, or "" if a digest may not use h.
func hashName(h crypto.Hash) string {
	for _, n := range hashNames {
		if n.hash == h {
			return n.name
		}
	}
	return ""
}

// digest is the hash of some part of an image, as a signature records it.
// In JSON it is the string "NAME:HEX", e.g. "sha256:9f86d0...".
type digest struct {
	hash crypto.Hash
	sum  []byte
}

// digestOf hashes everything r yields with h.
func digestOf(h crypto.Hash, r io.Reader) (digest, error) {
	if hashName(h) == "" {
		return digest{}, fmt.Errorf("hash %v is not usable in a SIF signature", h)
	}
	w := h.New()
	if _, err := io.Copy(w, r); err != nil {
		return digest{}, err
	}
	return digest{h, w.Sum(nil)}, nil
}

// matches says whether r yields the bytes d was made from.
func (d digest) matches(r io.Reader) (bool, error) {
	got, err := digestOf(d.hash, r)
	if err != nil {
		return false, err
	}
	return bytes.Equal(got.sum, d.sum), nil
}

// MarshalJSON implements json.Marshaler.
func (d digest) MarshalJSON() ([]byte, error) {
	name := hashName(d.hash)
	if name == "" {
		return nil, fmt.Errorf("hash %v is not usable in a SIF signature", d.hash)
	}
	return json.Marshal(name + ":" + hex.EncodeToString(d.sum))
}

// UnmarshalJSON implements json.Unmarshaler. It accepts only a known hash
// name and a value of that hash's size, so that a later comparison can
// only fail because the bytes differ.
func (d *digest) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	name, value, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(value, ":") {
		return fmt.Errorf("digest %q is not NAME:HEX", s)
	}
	var h crypto.Hash
	for _, n := range hashNames {
		if n.name == name {
			h = n.hash
		}
	}
	if h == 0 {
		return fmt.Errorf("digest %q: unknown hash %q", s, name)
	}
	sum, err := hex.DecodeString(value)
	if err != nil || len(sum) != h.Size() {
		return fmt.Errorf("digest %q: value is not %d hex bytes", s, h.Size())
	}
	*d = digest{h, sum}
	return nil
}
