package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/sylabs/sif/v2/pkg/integrity"
	"github.com/sylabs/sif/v2/pkg/sif"
)

// pgpKey makes a PGP key and writes its armored public and secret
// keyrings into dir as NAME.pub and NAME.sec.
func pgpKey(t *testing.T, dir, name string) (*openpgp.Entity, string, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "husk test", name+"@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, kind string, fn func(w *bytes.Buffer) error) {
		var b bytes.Buffer
		w, err := armor.Encode(&b, kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if err := fn(&raw); err != nil {
			t.Fatal(err)
		}
		w.Write(raw.Bytes())
		w.Close()
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		chown(t, path)
	}
	pub, sec := filepath.Join(dir, name+".pub"), filepath.Join(dir, name+".sec")
	write(pub, openpgp.PublicKeyType, func(w *bytes.Buffer) error { return e.Serialize(w) })
	write(sec, openpgp.PrivateKeyType, func(w *bytes.Buffer) error {
		return e.SerializePrivate(w, nil)
	})
	return e, pub, sec
}

// libraryVerify verifies path with the sif library directly, the oracle
// for what Apptainer's verify accepts.
func libraryVerify(t *testing.T, path string, e *openpgp.Entity) error {
	t.Helper()
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}
	defer f.UnloadContainer()
	v, err := integrity.NewVerifier(f, integrity.OptVerifyWithKeyRing(openpgp.EntityList{e}))
	if err != nil {
		return err
	}
	return v.Verify()
}

// sign and verify: an unsigned SIF fails verification; husk's signature
// verifies with husk and with the sif library, a library-made signature
// (Apptainer's) verifies with husk, and a changed image or a foreign key
// fails.
func TestSignVerify(t *testing.T) {
	setup(t)
	debianSIF(t)
	dir := workDir(t)
	root := filepath.Join(dir, "rootfs")
	smallRootfs(t, root)
	img := filepath.Join(dir, "small.sif")
	ok(t, dir, "build", img, root)
	alice, pub, sec := pgpKey(t, dir, "alice")
	_, otherPub, _ := pgpKey(t, dir, "mallory")

	verifyFails(t, husk(t, dir, "verify", "--keyring", pub, img), "Failed to verify container",
		"signature not found")

	r := ok(t, dir, "sign", "--keyring", sec, "--keyidx", "0", img)
	if !strings.Contains(r.stderr, "Signature created and applied to image") {
		t.Errorf("sign: %s", r)
	}
	if err := libraryVerify(t, img, alice); err != nil {
		t.Fatalf("the sif library rejects husk's signature: %v", err)
	}
	r = ok(t, dir, "verify", "--keyring", pub, img)
	for _, want := range []string{"[LOCAL]            Signing entity: alice (husk test) " +
		"<alice@example.org>", "Objects verified:", "ID  |GROUP   |LINK    |TYPE",
		"FS"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "Verified signature(s) from image '"+img+"'") {
		t.Errorf("verify: %s", r)
	}
	// A keyring file of several armored blocks (cat of two .pub files):
	// alice's key is found in the second.
	both := filepath.Join(dir, "both.pub")
	mb, _ := os.ReadFile(otherPub)
	ab, _ := os.ReadFile(pub)
	if err := os.WriteFile(both, append(mb, ab...), 0o644); err != nil {
		t.Fatal(err)
	}
	chown(t, both)
	ok(t, dir, "verify", "--keyring", both, img)

	r = ok(t, dir, "verify", "--json", "--keyring", pub, img)
	var kl struct {
		Signatures int
		SignerKeys []struct {
			Signer struct {
				Partition, Name, Fingerprint  string
				KeyLocal, KeyCheck, DataCheck bool
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &kl); err != nil || kl.Signatures != 1 ||
		len(kl.SignerKeys) == 0 {
		t.Fatalf("verify --json: %v\n%s", err, r)
	}
	for _, k := range kl.SignerKeys {
		s := k.Signer
		if !s.KeyLocal || !s.KeyCheck || !s.DataCheck || s.Name == "unknown" ||
			!strings.EqualFold(s.Fingerprint, fmt.Sprintf("%x", alice.PrimaryKey.Fingerprint)) {
			t.Errorf("verify --json entry: %+v", s)
		}
	}

	// A signed SIF gets no overlay partition, as in Apptainer.
	fatalLine(t, husk(t, dir, "overlay", "create", img),
		"SIF image "+img+" is signed: could not add writable overlay")

	// The default keyring is Apptainer's, under APPTAINER_KEYSDIR.
	keys := filepath.Join(dir, "keys")
	os.Mkdir(keys, 0o755)
	b, _ := os.ReadFile(pub)
	os.WriteFile(filepath.Join(keys, "pgp-public"), b, 0o644)
	if r := huskEnv(t, dir, []string{"APPTAINER_KEYSDIR=" + keys}, "verify", img); r.code != 0 {
		t.Errorf("verify with the default keyring: %s", r)
	}
	verifyFails(t, husk(t, dir, "verify", "--keyring", otherPub, img),
		"Failed to verify container")

	// A changed byte in the root file system breaks the signature.
	bad := filepath.Join(dir, "bad.sif")
	data, _ := os.ReadFile(img)
	off := primOffset(t, img)
	data[off+200] ^= 0xff
	os.WriteFile(bad, data, 0o644)
	verifyFails(t, husk(t, dir, "verify", "--keyring", pub, bad), "Failed to verify container")

	// A signature made by the library, as Apptainer makes it, verifies.
	lib := filepath.Join(dir, "lib.sif")
	smallCopy := filepath.Join(dir, "unsigned.sif")
	ok(t, dir, "build", smallCopy, root)
	b, _ = os.ReadFile(smallCopy)
	os.WriteFile(lib, b, 0o644)
	chown(t, lib)
	f, err := sif.LoadContainerFromPath(lib)
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.NewSigner(f, integrity.OptSignWithEntity(alice))
	if err == nil {
		err = s.Sign()
	}
	f.UnloadContainer()
	if err != nil {
		t.Fatal(err)
	}
	ok(t, dir, "verify", "--keyring", pub, lib)

	fatalLine(t, husk(t, dir, "sign", "--keyring", sec, "--keyidx", "3", smallCopy),
		"--keyidx 3:", "holds 1 keys")
}

// verifyFails checks a failed verify: Apptainer's INFO line, then one
// FATAL line containing every want, exit 255.
func verifyFails(t *testing.T, r result, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	info := "INFO:    Verifying image with PGP key material"
	if r.code != 255 || len(lines) != 2 || lines[0] != info ||
		!strings.HasPrefix(lines[1], "FATAL:   ") {
		t.Fatalf("want exit 255, the INFO line and one FATAL line, got:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(lines[1], w) {
			t.Errorf("FATAL line %q does not contain %q", lines[1], w)
		}
	}
}

// verify and sign name a file that is not a SIF and say so, instead of
// the sif library's "reading global header: unexpected EOF".
func TestVerifyNotSIF(t *testing.T) {
	setup(t)
	dir := workDir(t)
	_, pub, sec := pgpKey(t, dir, "alice")
	sifHead, err := os.ReadFile(debianSIF(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"notsif.sif", []byte("hello\n"), "not a SIF file"},
		{"empty.sif", nil, "not a SIF file"},
		{"text.sif", bytes.Repeat([]byte("not a sif "), 100), "not a SIF file"},
		{"trunc.sif", sifHead[:1000], "truncated SIF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			chown(t, p)
			fatalLine(t, husk(t, dir, "verify", "--keyring", pub, p), p+": "+tc.want)
			fatalLine(t, husk(t, dir, "sign", "--keyring", sec, p), p+": "+tc.want)
			if got, _ := os.ReadFile(p); !bytes.Equal(got, tc.data) {
				t.Errorf("sign changed %s", p)
			}
		})
	}
	// A FIFO is refused, not waited on for a writer; so is a directory.
	fifo := filepath.Join(dir, "fifo.sif")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	chown(t, fifo)
	for _, p := range []string{fifo, dir} {
		fatalLine(t, husk(t, dir, "verify", "--keyring", pub, p), p+": not a SIF file: "+
			"not a regular file")
		fatalLine(t, husk(t, dir, "sign", "--keyring", sec, p), p+": not a SIF file: "+
			"not a regular file")
	}
}

// Signatures husk cannot make: legacy ones verify with --legacy-insecure
// (by default the primary partition, with --all every object), a changed
// object is named in the text and --json output, and a DSSE (sigstore)
// signature is refused by name. The images and key are the SIF library's
// (sifsig/testdata).
func TestVerifyLegacyAndDSSE(t *testing.T) {
	setup(t)
	dir := workDir(t)
	get := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "sifsig", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		chown(t, p)
		return p
	}
	key := get("private.asc")
	legacy, all := get("one-group-signed-legacy.sif"), get("one-group-signed-legacy-all.sif")

	verifyFails(t, husk(t, dir, "verify", "--keyring", key, legacy),
		"signature not found for object group 1")
	r := ok(t, dir, "verify", "--legacy-insecure", "--keyring", key, legacy)
	if !strings.Contains(r.stdout, "2   |1       |NONE    |FS") ||
		strings.Contains(r.stdout, "\n1   |") {
		t.Errorf("legacy verify of the primary partition:\n%s", r.stdout)
	}
	r = ok(t, dir, "verify", "--legacy-insecure", "--all", "--keyring", key, all)
	if !strings.Contains(r.stdout, "\n1   |1") || !strings.Contains(r.stdout, "\n2   |1") {
		t.Errorf("legacy verify --all:\n%s", r.stdout)
	}

	// Object 2's data starts at 36864 (`husk sif list`).
	b, _ := os.ReadFile(all)
	b[36864] ^= 0xff
	os.WriteFile(all, b, 0o644)
	r = husk(t, dir, "verify", "--legacy-insecure", "--all", "--keyring", key, all)
	verifyFails(t, r, "object 2: data does not match its signature")
	if !strings.Contains(r.stdout, "Validation error: object 2: data does not match") {
		t.Errorf("no validation error for object 2:\n%s", r.stdout)
	}
	r = husk(t, dir, "verify", "--json", "--legacy-insecure", "--all", "--keyring", key, all)
	var kl struct {
		Signatures int
		SignerKeys []struct{ Signer struct{ DataCheck bool } }
	}
	if err := json.Unmarshal([]byte(r.stdout), &kl); err != nil || kl.Signatures != 2 ||
		len(kl.SignerKeys) != 2 || !kl.SignerKeys[0].Signer.DataCheck ||
		kl.SignerKeys[1].Signer.DataCheck {
		t.Errorf("verify --json of a changed object: %v\n%s", err, r)
	}

	verifyFails(t, husk(t, dir, "verify", "--keyring", key, get("one-group-signed-dsse.sif")),
		"signature object 3 is a DSSE (sigstore) signature; husk verifies PGP signatures only")
}
