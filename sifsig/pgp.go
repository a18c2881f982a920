// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sifsig

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// maxSignatureSize bounds the signature data read into memory. A real one
// is a few KiB (about 250 bytes per signed object); the bound keeps a
// descriptor with a forged size from making Verify allocate gigabytes.
const maxSignatureSize = 4 << 20

// legacyPrefix starts the signed text of every legacy signature; a JSON
// document cannot start with it.
var legacyPrefix = []byte("SIFHASH:\n")

// dssePayloadType is the payload type of the DSSE envelopes sigstore-based
// signers write into SIF signature objects.
const dssePayloadType = "application/vnd.sylabs.sif-metadata+json"

// acceptedHashes are the signature hashes a clear-signed message may use:
// the SHA-2 family, as Apptainer accepts. SHA-1 and the rest are refused.
var acceptedHashes = []crypto.Hash{crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512}

// format is the kind of a signature object's data.
type format int

const (
	formatUnknown format = iota
	formatPGP            // clear-signed JSON metadata
	formatLegacy         // clear-signed "SIFHASH:" digest
	formatDSSE
	formatBrokenPGP // starts like a clear-signed message, but is not one
)

// clearsignStart opens every clear-signed message.
var clearsignStart = []byte("-----BEGIN PGP SIGNED MESSAGE-----")

// readSignature returns the data of signature object sig.
func readSignature(sig sif.Descriptor) ([]byte, error) {
	if sig.Size() > maxSignatureSize {
		return nil, &SignatureError{ID: sig.ID(),
			Err: fmt.Errorf("%d bytes is too large for a signature", sig.Size())}
	}
	b, err := io.ReadAll(sig.GetReader())
	if err == nil && int64(len(b)) != sig.Size() {
		err = fmt.Errorf("data truncated (%d of %d bytes)", len(b), sig.Size())
	}
	if err != nil {
		return nil, &SignatureError{ID: sig.ID(), Err: err}
	}
	return b, nil
}

// decodeClearsign decodes the first clear-signed message in b, or returns
// nil. go-crypto's decoder panics on some malformed messages (a signature
// armor cut off after its first line: slice bounds out of range, found by
// FuzzSignatureObject); a SIF's signature object is untrusted input, and
// `husk verify` must say it is bad rather than crash.
func decodeClearsign(b []byte) (blk *clearsign.Block) {
	defer func() {
		if recover() != nil {
			blk = nil
		}
	}()
	blk, _ = clearsign.Decode(b)
	return blk
}

// formatOf tells what kind of signature data b holds. It only looks; it
// trusts nothing.
func formatOf(b []byte) format {
	if blk := decodeClearsign(b); blk != nil {
		if bytes.HasPrefix(blk.Plaintext, legacyPrefix) {
			return formatLegacy
		}
		return formatPGP
	}
	if bytes.Contains(b, clearsignStart) {
		return formatBrokenPGP
	}
	var env struct {
		PayloadType string `json:"payloadType"`
	}
	if json.NewDecoder(bytes.NewReader(b)).Decode(&env) == nil &&
		env.PayloadType == dssePayloadType {
		return formatDSSE
	}
	return formatUnknown
}

// clearsignWith signs text with e's primary key in a clear-signed message
// and returns the message and the hash of the signature.
func clearsignWith(e *openpgp.Entity, text []byte) ([]byte, crypto.Hash, error) {
	// SHA-256 explicitly: the descriptor records this hash, and the
	// library default could change.
	conf := &packet.Config{DefaultHash: crypto.SHA256}
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, e.PrivateKey, conf)
	if err != nil {
		return nil, 0, err
	}
	if _, err := w.Write(text); err != nil {
		return nil, 0, err
	}
	if err := w.Close(); err != nil {
		return nil, 0, err
	}
	return b.Bytes(), conf.Hash(), nil
}

// openClearsigned checks the clear-signed message b of signature object
// sig against keyring kr and the fingerprint fp of its descriptor, and
// returns its text and signer. The signer is returned whenever the library
// names one, also with an error, so a caller can say who signed a message
// that failed later checks.
func openClearsigned(kr openpgp.KeyRing, sig uint32, b []byte, fp []byte) (
	text []byte, signer *openpgp.Entity, err error) {
	defer func() {
		// As decodeClearsign: go-crypto's parsers may panic on a crafted
		// signature; it is a bad signature, not a crash of husk.
		if r := recover(); r != nil {
			text, signer = nil, nil
			err = &SignatureError{ID: sig, Err: fmt.Errorf("malformed signature (%v)", r)}
		}
	}()
	blk := decodeClearsign(b)
	if blk == nil || blk.ArmoredSignature == nil {
		return nil, nil, &SignatureError{ID: sig, Err: errors.New("not a clear-signed message")}
	}
	if kr == nil {
		kr = openpgp.EntityList{}
	}
	signer, err = openpgp.CheckDetachedSignatureAndHash(kr, bytes.NewReader(blk.Bytes),
		blk.ArmoredSignature.Body, acceptedHashes, nil)
	if errors.Is(err, pgperrors.ErrUnknownIssuer) {
		err = unknownKey(fp)
	}
	if err != nil {
		return nil, signer, &SignatureError{ID: sig, Err: err}
	}

	// The descriptor names the signing key so that a tool can pick keys
	// without parsing PGP; a signer other than the named one means the
	// descriptor was changed or forged.
	if got := signer.PrimaryKey.Fingerprint; !bytes.Equal(got, fp) {
		named := "no key"
		if fp != nil {
			named = fmt.Sprintf("key %X", fp)
		}
		return nil, signer, &SignatureError{ID: sig,
			Err: fmt.Errorf("signed by key %X, but its descriptor names %s", got, named)}
	}
	return blk.Plaintext, signer, nil
}

// unknownKey is the error for a signature by a key not in the keyring. The
// fingerprint is the descriptor's claim, unchecked, but it is what a user
// needs to find the key.
func unknownKey(fp []byte) error {
	if fp == nil {
		return errors.New("signed by a key that is not in the keyring")
	}
	return fmt.Errorf("signed by a key that is not in the keyring (its descriptor names %X)",
		fp)
}

// parseLegacyDigest reads the digest of legacy signature text, made with
// hash h (the hash type of the signature's descriptor).
func parseLegacyDigest(text []byte, h crypto.Hash) (digest, error) {
	v, ok := bytes.CutPrefix(text, legacyPrefix)
	if !ok {
		return digest{}, errors.New("not a legacy (SIFHASH) signature")
	}
	v = bytes.TrimSuffix(v, []byte("\n"))
	if hashName(h) == "" {
		return digest{}, fmt.Errorf("legacy signature hash %v is not supported", h)
	}
	sum := make([]byte, hex.DecodedLen(len(v)))
	if _, err := hex.Decode(sum, v); err != nil || len(sum) != h.Size() {
		return digest{}, fmt.Errorf("legacy signature digest is not %d hex bytes", h.Size())
	}
	return digest{h, sum}, nil
}
