package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/husk-project/husk/sifsig"
)

// SIF signatures (`husk verify`, `husk sign`) through package sifsig, in
// Apptainer's layout: PGP clear-signed descriptions of each object group.
// husk reads keys from keyring files only; it never asks a key server, and
// has no x509 or sigstore keys. sifsig, not the sif library's integrity
// package, because that package links sigstore and protobuf, whose package
// initialisation every husk process (three per run) would pay for.

// globalKeyring is Apptainer's system-wide public keyring (package
// installs put APPTAINER_CONFDIR at /etc/apptainer).
const globalKeyring = "/etc/apptainer/global-pgp-public"

// VerifyCmd is `husk verify [flags] IMAGE`.
type VerifyCmd struct {
	Keyring []string `placeholder:"FILE" help:"${vkeyring}" env:"HUSK_KEYRING"`
	GroupID uint32   `short:"g" name:"group-id" help:"Verify the object group with this ID."`
	SifID   uint32   `short:"i" name:"sif-id" help:"Verify the object with this ID."`
	Legacy  bool     `name:"legacy-insecure" help:"Verify (insecure) legacy signatures."`
	All     bool     `short:"a" help:"With --legacy-insecure, verify all objects."`
	Local   bool     `short:"l" help:"Only use local keys (husk always does)."`
	JSON    bool     `short:"j" help:"Print the results as JSON, as Apptainer does."`
	Image   string   `arg:"" help:"SIF to verify."`
}

// Help implements kong.HelpProvider.
func (VerifyCmd) Help() string {
	return `Checks the PGP signatures of a SIF, as 'apptainer verify' does with local keys:
each object group must carry a signature made by a key of the keyrings. The
default keyrings are Apptainer's: ~/.apptainer/keys/pgp-public (or
$APPTAINER_KEYSDIR/pgp-public) and ` + globalKeyring + `.

Example:
  husk verify --keyring alice.pub debian.sif`
}

// SignCmd is `husk sign [flags] IMAGE`.
type SignCmd struct {
	Keyring string `placeholder:"FILE" help:"${skeyring}" env:"HUSK_SECRET_KEYRING"`
	KeyIdx  int    `short:"k" name:"keyidx" help:"Index of the key in the keyring (0 first)."`
	GroupID uint32 `short:"g" name:"group-id" help:"Sign only the object group with this ID."`
	SifID   uint32 `short:"i" name:"sif-id" help:"Sign only the object with this ID."`
	Image   string `arg:"" help:"SIF to sign."`
}

// Help implements kong.HelpProvider.
func (SignCmd) Help() string {
	return `Adds a PGP signature for each object group of a SIF, as 'apptainer sign'
does, with a key of a secret keyring file (default ~/.apptainer/keys/pgp-secret,
as Apptainer's). The key must not be passphrase-protected, or the passphrase
must be in $APPTAINER_PASSPHRASE (or $HUSK_PASSPHRASE).

Example:
  husk sign --keyring alice.sec --keyidx 0 debian.sif`
}

func init() {
	helpVars["vkeyring"] = "Public keyring file (armored or binary). Repeatable; " +
		"default: Apptainer's keyrings."
	helpVars["skeyring"] = "Secret keyring file (armored or binary)."
}

// keysDir is Apptainer's key directory: $APPTAINER_KEYSDIR, else
// ~/.apptainer/keys.
func keysDir() string {
	if d := os.Getenv("APPTAINER_KEYSDIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".apptainer", "keys")
}

// readKeyring reads an armored or binary OpenPGP keyring file. An
// armored file may hold several blocks, as `cat a.pub b.pub` makes: all
// are read (openpgp.ReadArmoredKeyRing reads the first only, and a key in
// a later block would be reported missing).
func readKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	el, err := readArmoredKeys(b)
	if err != nil {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return el, nil
}

// readArmoredKeys reads every armored key block of b. armor.Decode reads
// through a bufio.Reader, its own unless given one: one shared reader keeps
// what it read ahead of a block for the next. Armored files often end
// without a newline, so that `cat` glues the next block's BEGIN line to
// the end of the previous one: every BEGIN line is made to start a line.
func readArmoredKeys(b []byte) (openpgp.EntityList, error) {
	b = bytes.ReplaceAll(b, []byte("-----BEGIN "), []byte("\n-----BEGIN "))
	r := bufio.NewReaderSize(bytes.NewReader(b), 4096)
	var el openpgp.EntityList
	for {
		blk, err := armor.Decode(r)
		if err == io.EOF && len(el) > 0 {
			return el, nil
		}
		if err != nil {
			return nil, err
		}
		if blk.Type != openpgp.PublicKeyType && blk.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("armored block of type %q, not a key", blk.Type)
		}
		keys, err := openpgp.ReadKeyRing(blk.Body)
		if err != nil {
			return nil, err
		}
		el = append(el, keys...)
	}
}

// Run implements `husk verify`.
func (c *VerifyCmd) Run(g *globals) error {
	if err := checkSIF(c.Image); err != nil {
		return err
	}
	paths, explicit := c.Keyring, len(c.Keyring) > 0
	if !explicit {
		paths = []string{filepath.Join(keysDir(), "pgp-public"), globalKeyring}
	}
	var kr openpgp.EntityList
	for _, p := range paths {
		el, err := readKeyring(p)
		if err != nil {
			if !explicit && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		kr = append(kr, el...)
	}

	f, err := sif.LoadContainerFromPath(c.Image, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return fmt.Errorf("%s: %w", c.Image, err)
	}
	defer f.UnloadContainer()

	g.info("Verifying image with PGP key material")
	var kl keyList
	o := sifsig.VerifyOptions{
		Group:     c.GroupID,
		Object:    c.SifID,
		Legacy:    c.Legacy,
		LegacyAll: c.Legacy && c.All,
		Result: func(r sifsig.Result) {
			if c.JSON {
				kl.add(f, r, kr)
			} else {
				printVerifyResult(os.Stdout, r, kr)
			}
		},
	}
	// Apptainer's legacy default: the primary partition, the only object
	// old signers signed on its own.
	if c.Legacy && !c.All && c.GroupID == 0 && c.SifID == 0 {
		od, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
		if err != nil {
			return fmt.Errorf("Failed to verify container: %s: %w", c.Image, err)
		}
		o.Object = od.ID()
	}
	err = sifsig.Verify(f, kr, o)
	if c.JSON {
		// Always printed, as by Apptainer, also when verification fails.
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(kl); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		return fmt.Errorf("Failed to verify container: %s: %w", c.Image, err)
	}
	g.info(fmt.Sprintf("Verified signature(s) from image '%s'", c.Image))
	return nil
}

// printVerifyResult prints a result as Apptainer's outputVerify does:
// the signing entity, then the verified objects.
func printVerifyResult(w io.Writer, r sifsig.Result, local openpgp.EntityList) {
	if e := r.Signer; e != nil {
		prefix := "[REMOTE]"
		if len(local.KeysByIdUsage(e.PrimaryKey.KeyId, packet.KeyFlagSign)) > 0 {
			prefix = "[LOCAL]"
		}
		if id := primaryIdentity(e); id != nil {
			fmt.Fprintf(w, "%-18v Signing entity: %v\n", prefix, id.Name)
		}
		fmt.Fprintf(w, "%-18v Fingerprint: %X\n", prefix, e.PrimaryKey.Fingerprint)
	}
	if len(r.Verified) > 0 {
		fmt.Fprintf(w, "Objects verified:\n%-4s|%-8s|%-8s|%s\n", "ID", "GROUP", "LINK", "TYPE")
		fmt.Fprint(w, "------------------------------------------------\n")
	}
	for _, od := range r.Verified {
		group := "NONE"
		if gid := od.GroupID(); gid != 0 {
			group = fmt.Sprint(gid)
		}
		link := "NONE"
		if l, isGroup := od.LinkedID(); l != 0 {
			link = fmt.Sprint(l)
			if isGroup {
				link += " (G)"
			}
		}
		fmt.Fprintf(w, "%-4d|%-8s|%-8s|%s\n", od.ID(), group, link, od.DataType())
	}
	if r.Err != nil {
		fmt.Fprintf(w, "\nValidation error: %v\n", r.Err)
	}
}

// keyList is Apptainer's verify --json output.
type keyList struct {
	Signatures int
	SignerKeys []*signerKey
}

type signerKey struct {
	Signer keyEntity
}

type keyEntity struct {
	Partition   string
	Name        string
	Fingerprint string
	KeyLocal    bool
	KeyCheck    bool
	DataCheck   bool
}

// add records one result as Apptainer's JSON callback does: one entry
// per verified object, and one for an object whose data did not match.
func (kl *keyList) add(f *sif.FileImage, r sifsig.Result, local openpgp.EntityList) {
	name, fp := "unknown", ""
	var keyLocal, keyCheck bool
	kl.Signatures++
	if e := r.Signer; e != nil {
		if id := primaryIdentity(e); id != nil {
			name = id.Name
		}
		fp = hex.EncodeToString(e.PrimaryKey.Fingerprint[:])
		keyLocal = len(local.KeysByIdUsage(e.PrimaryKey.KeyId, packet.KeyFlagSign)) > 0
		keyCheck = true
	}
	entry := func(od sif.Descriptor, data bool) {
		kl.SignerKeys = append(kl.SignerKeys, &signerKey{keyEntity{
			Partition: od.DataType().String(), Name: name, Fingerprint: fp,
			KeyLocal: keyLocal, KeyCheck: keyCheck, DataCheck: data}})
	}
	for _, od := range r.Verified {
		entry(od, true)
	}
	var ce *sifsig.ChangedError
	if errors.As(r.Err, &ce) && ce.Part == sifsig.PartData {
		if od, err := f.GetDescriptor(sif.WithID(ce.ID)); err == nil {
			entry(od, false)
		}
	}
}

// primaryIdentity is the identity marked primary, else the first one.
func primaryIdentity(e *openpgp.Entity) *openpgp.Identity {
	var first *openpgp.Identity
	for _, id := range e.Identities {
		if first == nil {
			first = id
		}
		if id.SelfSignature != nil && id.SelfSignature.IsPrimaryId != nil &&
			*id.SelfSignature.IsPrimaryId {
			return id
		}
	}
	return first
}

// Run implements `husk sign`.
func (c *SignCmd) Run(g *globals) error {
	path := c.Keyring
	if path == "" {
		path = filepath.Join(keysDir(), "pgp-secret")
	}
	el, err := readKeyring(path)
	if err != nil {
		return err
	}
	if c.KeyIdx < 0 || c.KeyIdx >= len(el) {
		return fmt.Errorf("--keyidx %d: %s holds %d keys", c.KeyIdx, path, len(el))
	}
	e := el[c.KeyIdx]
	if e.PrivateKey == nil {
		return fmt.Errorf("key %d of %s has no private key", c.KeyIdx, path)
	}
	if e.PrivateKey.Encrypted {
		pass := os.Getenv("HUSK_PASSPHRASE")
		if pass == "" {
			pass = os.Getenv("APPTAINER_PASSPHRASE")
		}
		if pass == "" {
			return fmt.Errorf("key %d of %s is passphrase-protected: set APPTAINER_PASSPHRASE",
				c.KeyIdx, path)
		}
		if err := e.DecryptPrivateKeys([]byte(pass)); err != nil {
			return fmt.Errorf("key %d of %s: %w", c.KeyIdx, path, err)
		}
	}

	if err := checkSIF(c.Image); err != nil {
		return err
	}
	f, err := sif.LoadContainerFromPath(c.Image)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Image, err)
	}
	g.info("Signing image with PGP key material")
	err = sifsig.Sign(f, e, sifsig.SignOptions{Group: c.GroupID, Object: c.SifID})
	if uerr := f.UnloadContainer(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("Failed to sign container: %s: %w", c.Image, err)
	}
	g.info(fmt.Sprintf("Signature created and applied to image '%s'", c.Image))
	return nil
}
