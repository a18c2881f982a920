// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

// Package sifsig adds and checks the PGP signatures of a SIF image's object
// groups, in the layout `apptainer sign` writes and `apptainer verify`
// accepts.
//
// # Format
//
// A signature is a SIF object of type Signature. It belongs to no object
// group and is linked to the group it covers. Its descriptor's extra area
// holds the hash type of the PGP signature and the 20-byte fingerprint of
// the signing key's primary key. Its data is a PGP clear-signed message
// whose text is a JSON document:
//
//	{"version":1,
//	 "header":{"digest":"sha256:<hex>"},
//	 "objects":[{"relativeId":0,
//	             "descriptorDigest":"sha256:<hex>",
//	             "objectDigest":"sha256:<hex>"}, ...]}
//
// The header digest covers the fields of the global header that never
// change (launch script, magic, version, image ID); each object entry
// covers the stable fields of one descriptor and the object's bytes. A
// relativeId counts from the lowest object ID in the group (of any object
// in it, signed or not). The integrity readers of pkg/sif,
// [sif.FileImage.GetHeaderIntegrityReader] and
// [sif.Descriptor.GetIntegrityReader], define those fields.
//
// Older tools wrote "legacy" signatures: the clear-signed text is
// "SIFHASH:\n" and the hex digest of the signed objects' bytes, in the hash
// named by the descriptor. They are linked either to one object or to a
// group (then the digest is over the bytes of all the group's objects, in
// descriptor order, end to end). They protect no header or descriptor field, so they are only
// checked on request ([VerifyOptions.Legacy]).
//
// # Use
//
//	err := sifsig.Sign(f, entity, sifsig.SignOptions{})
//	err = sifsig.Verify(f, keyring, sifsig.VerifyOptions{
//		Result: func(r sifsig.Result) { ... },
//	})
//
// # Not supported
//
//   - DSSE envelopes (sigstore, x509 keys): [Verify] recognises them and
//     refuses them with an [UnsupportedError].
//   - Key servers: keys come from the caller's keyring only.
//   - Signing legacy signatures; they are only verified.
//   - Keys whose fingerprint is not 20 bytes (OpenPGP v5 and v6): the
//     descriptor has room for a v4 fingerprint only, so [Sign] refuses them.
package sifsig
