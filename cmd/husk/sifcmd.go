package main

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/husk-project/husk/cmd/internal/image"
)

// `husk sif` is Apptainer's `sif` (siftool) command on the same library;
// its tables print as Apptainer's do (COMPAT §9), so scripts that parse
// them keep working.

// SifCmd groups the SIF subcommands.
type SifCmd struct {
	Header  SifHeaderCmd  `cmd:"" help:"Display the global header."`
	List    SifListCmd    `cmd:"" help:"List the data objects."`
	Info    SifInfoCmd    `cmd:"" help:"Display the details of a data object."`
	Dump    SifDumpCmd    `cmd:"" help:"Write a data object's bytes to stdout."`
	New     SifNewCmd     `cmd:"" help:"Create an empty SIF."`
	Add     SifAddCmd     `cmd:"" help:"Add a data object."`
	Del     SifDelCmd     `cmd:"" help:"Delete a data object (not zeroed, not compacted)."`
	Setprim SifSetprimCmd `cmd:"" help:"Make a system partition the primary one."`
}

// Help implements kong.HelpProvider.
func (SifCmd) Help() string {
	return `Examples:
  husk sif list debian.sif
  husk sif dump 3 debian.sif > overlay.img
  husk sif add --datatype 4 --parttype 4 --partfs 2 --partarch 2 debian.sif o.img`
}

type sifPathArg struct {
	Path string `arg:"" name:"SIF" help:"SIF file."`
}

type sifIDArgs struct {
	ID   uint32 `arg:"" help:"Descriptor ID."`
	Path string `arg:"" name:"SIF" help:"SIF file."`
}

// SifHeaderCmd is `husk sif header SIF`.
type SifHeaderCmd struct{ sifPathArg }

// SifListCmd is `husk sif list SIF`.
type SifListCmd struct{ sifPathArg }

// SifInfoCmd is `husk sif info ID SIF`.
type SifInfoCmd struct{ sifIDArgs }

// SifDumpCmd is `husk sif dump ID SIF`.
type SifDumpCmd struct{ sifIDArgs }

// SifNewCmd is `husk sif new SIF`.
type SifNewCmd struct{ sifPathArg }

// SifDelCmd is `husk sif del ID SIF`.
type SifDelCmd struct{ sifIDArgs }

// SifSetprimCmd is `husk sif setprim ID SIF`.
type SifSetprimCmd struct{ sifIDArgs }

// SifAddCmd is `husk sif add [flags] SIF FILE`.
type SifAddCmd struct {
	Datatype   int    `required:"" help:"${sif_datatype}"`
	Parttype   int32  `help:"Partition type: 1 System, 2 PrimSys, 3 Data, 4 Overlay."`
	Partfs     int32  `help:"Partition file system: 1 Squash, 2 Ext3, 3 ImmuObj, 4 Raw."`
	Partarch   int32  `help:"${sif_partarch}"`
	Signhash   int32  `help:"${sif_signhash}"`
	Signentity string `help:"Signing entity fingerprint (40 hex digits)."`
	Sbomformat string `help:"SBOM format (cyclonedx-json, spdx-json, ...)."`
	Groupid    uint32 `help:"Group ID (default 0: no group)."`
	Link       uint32 `help:"ID of the linked object (default: none)."`
	Alignment  int    `help:"Alignment (default 4096 for partitions, none otherwise)."`
	Filename   string `help:"Object name (default: none)."`
	Path       string `arg:"" name:"SIF" help:"SIF file."`
	File       string `arg:"" name:"FILE" help:"File holding the object's data."`
}

// Help implements kong.HelpProvider.
func (SifAddCmd) Help() string {
	return `Example:
  husk sif add --datatype 4 --parttype 4 --partfs 2 --partarch 2 --groupid 1 debian.sif o.img`
}

func init() {
	for k, v := range sifHelpVars {
		helpVars[k] = v
	}
}

var sifHelpVars = map[string]string{
	"sif_signhash": "Signature hash: 1 SHA256, 2 SHA384, 3 SHA512, 4 BLAKE2s_256, " +
		"5 BLAKE2b_256.",
	"sif_datatype": "Data type (required): 1 Deffile, 2 EnvVar, 3 Labels, 4 Partition, " +
		"5 Signature, 6 GenericJSON, 7 Generic, 8 CryptoMessage, 9 SBOM, 10 OCI.RootIndex, " +
		"11 OCI.Blob.",
	"sif_partarch": "Partition architecture: 1 386, 2 amd64, 3 arm, 4 arm64, 5 ppc64, " +
		"6 ppc64le, 7 mips, 8 mipsle, 9 mips64, 10 mips64le, 11 s390x, 12 riscv64, " +
		"13 loong64.",
}

// checkSIF refuses a file that is not a SIF, or whose header is damaged,
// before the sif library reads it (whose "reading global header: unexpected
// EOF" says neither): a file without SIF_MAGIC is "not a SIF file", the rest
// is the header check the run commands make (image.InspectSIF). A FIFO or
// device is refused, not waited on: it is opened without blocking and
// must be a regular file.
func checkSIF(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a SIF file: not a regular file", path)
	}
	const magicOff, magic = 32, "SIF_MAGIC"
	b := make([]byte, len(magic))
	if n, _ := f.ReadAt(b, magicOff); n < len(b) || string(b) != magic {
		return fmt.Errorf("%s: not a SIF file: no %s at offset %d", path, magic, magicOff)
	}
	_, err = image.InspectSIF(f, path)
	return err
}

func withSIF(path string, writable bool, fn func(*sif.FileImage) error) error {
	if err := checkSIF(path); err != nil {
		return err
	}
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(flag))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	err = fn(f)
	if uerr := f.UnloadContainer(); err == nil {
		err = uerr
	}
	return err
}

// objectErr names the file and object in the sif library's errors about
// object id, whose "object not found" alone says neither.
func objectErr(path string, id uint32, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sif.ErrObjectNotFound):
		return fmt.Errorf("%s: no object with id %d", path, id)
	}
	return fmt.Errorf("%s: object %d: %w", path, id, err)
}

// Run implements `husk sif header`.
func (c *SifHeaderCmd) Run(g *globals) error {
	return withSIF(c.Path, false, func(f *sif.FileImage) error {
		return writeSIFHeader(os.Stdout, f)
	})
}

// Run implements `husk sif list`.
func (c *SifListCmd) Run(g *globals) error {
	return withSIF(c.Path, false, func(f *sif.FileImage) error {
		writeSIFList(os.Stdout, f)
		return nil
	})
}

// Run implements `husk sif info`.
func (c *SifInfoCmd) Run(g *globals) error {
	return withSIF(c.Path, false, func(f *sif.FileImage) error {
		d, err := f.GetDescriptor(sif.WithID(c.ID))
		if err != nil {
			return objectErr(c.Path, c.ID, err)
		}
		return writeSIFInfo(os.Stdout, d)
	})
}

// Run implements `husk sif dump`.
func (c *SifDumpCmd) Run(g *globals) error {
	return withSIF(c.Path, false, func(f *sif.FileImage) error {
		d, err := f.GetDescriptor(sif.WithID(c.ID))
		if err != nil {
			return objectErr(c.Path, c.ID, err)
		}
		_, err = io.CopyN(os.Stdout, d.GetReader(), d.Size())
		return err
	})
}

// Run implements `husk sif new`.
func (c *SifNewCmd) Run(g *globals) error {
	// sif removes the path when it fails to write a header there: a FIFO
	// or device, which it cannot seek, would be gone.
	if fi, err := os.Stat(c.Path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file", c.Path)
	}
	f, err := sif.CreateContainerAtPath(c.Path)
	if err != nil {
		return err
	}
	return f.UnloadContainer()
}

// Run implements `husk sif del`. An object a running container uses (its
// overlay partition) is not deleted under it.
func (c *SifDelCmd) Run(g *globals) error {
	return withSIF(c.Path, true, func(f *sif.FileImage) error {
		d, err := f.GetDescriptor(sif.WithID(c.ID))
		if err != nil {
			return objectErr(c.Path, c.ID, err)
		}
		if d.Size() > 0 {
			lf, err := lockSIFBytes(c.Path, d.Offset(), d.Size())
			if err != nil {
				return err
			}
			defer lf.Close()
		}
		return objectErr(c.Path, c.ID, f.DeleteObject(c.ID))
	})
}

// lockSIFBytes opens the SIF at path once more and takes a write lock over
// n bytes from off there (image.LockBytes); closing the file ends it.
func lockSIFBytes(path string, off, n int64) (*os.File, error) {
	lf, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := image.LockBytes(lf, path, off, n); err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

// Run implements `husk sif setprim`.
func (c *SifSetprimCmd) Run(g *globals) error {
	return withSIF(c.Path, true, func(f *sif.FileImage) error {
		// sif takes an object that is primary already as done, and
		// would leave a second one primary.
		prims, err := f.GetDescriptors(sif.WithPartitionType(sif.PartPrimSys))
		if err == nil && len(prims) > 1 {
			return fmt.Errorf("%s: corrupt SIF: %s are all primary system partitions, "+
				"and setprim cannot demote them", c.Path, image.PrimaryIDs(prims))
		}
		return objectErr(c.Path, c.ID, f.SetPrimPart(c.ID))
	})
}

var sifDataTypes = []sif.DataType{sif.DataDeffile, sif.DataEnvVar, sif.DataLabels,
	sif.DataPartition, sif.DataSignature, sif.DataGenericJSON, sif.DataGeneric,
	sif.DataCryptoMessage, sif.DataSBOM, sif.DataOCIRootIndex, sif.DataOCIBlob}

var sifArchs = []string{"386", "amd64", "arm", "arm64", "ppc64", "ppc64le", "mips",
	"mipsle", "mips64", "mips64le", "s390x", "riscv64", "loong64"}

var sifSBOMFormats = map[string]sif.SBOMFormat{
	"cyclonedx-json": sif.SBOMFormatCycloneDXJSON, "cyclonedx-xml": sif.SBOMFormatCycloneDXXML,
	"github": sif.SBOMFormatGitHubJSON, "github-json": sif.SBOMFormatGitHubJSON,
	"spdx-json": sif.SBOMFormatSPDXJSON, "spdx-rdf": sif.SBOMFormatSPDXRDF,
	"spdx-tag-value": sif.SBOMFormatSPDXTagValue, "spdx-yaml": sif.SBOMFormatSPDXYAML,
	"syft-json": sif.SBOMFormatSyftJSON,
}

// Run implements `husk sif add`.
func (c *SifAddCmd) Run(g *globals) error {
	if c.Datatype < 1 || c.Datatype > len(sifDataTypes) {
		return errors.New("--datatype flag is required with a valid range")
	}
	dt := sifDataTypes[c.Datatype-1]
	var opts []sif.DescriptorInputOpt
	if c.Groupid == 0 {
		opts = append(opts, sif.OptNoGroup())
	} else {
		opts = append(opts, sif.OptGroupID(c.Groupid))
	}
	if c.Link != 0 {
		opts = append(opts, sif.OptLinkedID(c.Link))
	}
	if c.Alignment != 0 {
		opts = append(opts, sif.OptObjectAlignment(c.Alignment))
	}
	if c.Filename != "" {
		opts = append(opts, sif.OptObjectName(c.Filename))
	}
	switch dt {
	case sif.DataPartition:
		if c.Parttype == 0 || c.Partfs == 0 || c.Partarch == 0 {
			return errors.New("with partition datatype, --partfs, --parttype and " +
				"--partarch must be passed")
		}
		arch := "unknown"
		if int(c.Partarch) <= len(sifArchs) && c.Partarch > 0 {
			arch = sifArchs[c.Partarch-1]
		}
		opts = append(opts, sif.OptPartitionMetadata(sif.FSType(c.Partfs),
			sif.PartType(c.Parttype), arch))
	case sif.DataSignature:
		opt, err := signatureOpt(c.Signhash, c.Signentity)
		if err != nil {
			return err
		}
		opts = append(opts, opt)
	case sif.DataSBOM:
		f, ok := sifSBOMFormats[c.Sbomformat]
		if !ok {
			return fmt.Errorf("invalid SBOM format: %q", c.Sbomformat)
		}
		opts = append(opts, sif.OptSBOMMetadata(f))
	}
	in, err := os.Open(c.File)
	if err != nil {
		return err
	}
	defer in.Close()
	return withSIF(c.Path, true, func(f *sif.FileImage) error {
		input, err := sif.NewDescriptorInput(dt, in, opts...)
		if err != nil {
			return err
		}
		// The object goes where a deleted one may lie that a running
		// container still uses.
		lf, err := lockSIFBytes(c.Path, image.SIFDataEnd(f), 0)
		if err != nil {
			return err
		}
		defer lf.Close()
		return f.AddObject(input)
	})
}

// sizeString prints n the way Apptainer's `sif header` does: plain bytes
// below 1 KiB, otherwise rounded to a whole number of the largest binary
// unit that keeps the value under 1024.
func sizeString(n int64) string {
	if n > -1024 && n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, 0
	for math.Abs(math.Trunc(v)) >= 1024 && unit < len("KMGTPE")-1 {
		v /= 1024
		unit++
	}
	return fmt.Sprintf("%.0f %ciB", math.Round(v), "KMGTPE"[unit])
}

// field is one "Name: value" line of a header or descriptor report; lines
// whose value is empty are left out, as Apptainer leaves out unset ones.
type field struct{ name, value string }

func writeFields(w io.Writer, fields []field, indent string, pad int) error {
	tw := tabwriter.NewWriter(w, 0, 0, pad, ' ', 0)
	for _, f := range fields {
		if f.value != "" {
			fmt.Fprintf(tw, "%s%s:\t%s\n", indent, f.name, f.value)
		}
	}
	return tw.Flush()
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().String()
}

func writeSIFHeader(w io.Writer, f *sif.FileImage) error {
	arch, id := f.PrimaryArch(), f.ID()
	if arch == "unknown" {
		arch = ""
	}
	if id == "00000000-0000-0000-0000-000000000000" {
		id = "" // a deterministic build
	}
	return writeFields(w, []field{
		{"Launch Script", strings.TrimSuffix(f.LaunchScript(), "\n")},
		{"Version", f.Version()},
		{"Primary Architecture", arch},
		{"ID", id},
		{"Created At", timeString(f.CreatedAt())},
		{"Modified At", timeString(f.ModifiedAt())},
		{"Descriptors Free", fmt.Sprint(f.DescriptorsFree())},
		{"Descriptors Total", fmt.Sprint(f.DescriptorsTotal())},
		{"Descriptors Offset", fmt.Sprint(f.DescriptorsOffset())},
		{"Descriptors Size", sizeString(f.DescriptorsSize())},
		{"Data Offset", fmt.Sprint(f.DataOffset())},
		{"Data Size", sizeString(f.DataSize())},
	}, "", 1)
}

// groupString and linkString are the GROUP and LINK columns: NONE for an
// object outside any group or unlinked, "(G)" after a link to a group.
func groupString(d sif.Descriptor) string {
	if d.GroupID() == 0 {
		return "NONE"
	}
	return fmt.Sprint(d.GroupID())
}

func linkString(d sif.Descriptor, groupMark string) string {
	id, isGroup := d.LinkedID()
	switch {
	case id == 0:
		return "NONE"
	case isGroup:
		return fmt.Sprintf(groupMark, id)
	}
	return fmt.Sprint(id)
}

const sifRule = "------------------------------------------------------------------------------"

func writeSIFList(w io.Writer, f *sif.FileImage) {
	row := func(id, group, link, pos, typ string) {
		fmt.Fprintf(w, "%-4s |%-7s |%-7s |%-25s |%s\n", id, group, link, pos, typ)
	}
	fmt.Fprintln(w, sifRule)
	row("ID", "GROUP", "LINK", "SIF POSITION (start-end)", "TYPE")
	fmt.Fprintln(w, sifRule)
	f.WithDescriptors(func(d sif.Descriptor) bool {
		pos := fmt.Sprintf("%d-%d", d.Offset(), d.Offset()+d.Size())
		row(fmt.Sprint(d.ID()), groupString(d), linkString(d, "%-3d (G)"), pos,
			sifTypeDetail(d))
		return false
	})
}

// sifTypeDetail is the TYPE column: the data type, then in parentheses
// what its extra area says, when it can be read.
func sifTypeDetail(d sif.Descriptor) string {
	var detail string
	switch d.DataType() {
	case sif.DataPartition:
		if fs, pt, arch, err := d.PartitionMetadata(); err == nil {
			detail = fmt.Sprintf("%s/%s/%s", fs, pt, arch)
		}
	case sif.DataSignature:
		if ht, _, err := d.SignatureMetadata(); err == nil {
			detail = ht.String()
		}
	case sif.DataCryptoMessage:
		if ft, mt, err := d.CryptoMessageMetadata(); err == nil {
			detail = fmt.Sprintf("%s/%s", ft, mt)
		}
	case sif.DataSBOM:
		if f, err := d.SBOMMetadata(); err == nil {
			detail = f.String()
		}
	}
	if detail == "" {
		return d.DataType().String()
	}
	return fmt.Sprintf("%s (%s)", d.DataType(), detail)
}

func writeSIFInfo(w io.Writer, d sif.Descriptor) error {
	fields := []field{
		{"Data Type", d.DataType().String()},
		{"ID", fmt.Sprint(d.ID())},
		{"Group ID", groupString(d)},
		{"Linked ID", linkString(d, "%d (G)")},
		{"Offset", fmt.Sprint(d.Offset())},
		{"Size", fmt.Sprint(d.Size())},
		{"Created At", timeString(d.CreatedAt())},
		{"Modified At", timeString(d.ModifiedAt())},
		{"Name", d.Name()},
	}
	more, err := typeFields(d)
	if err != nil {
		return err
	}
	return writeFields(w, append(fields, more...), "\t", 2)
}

// typeFields are the lines `sif info` adds for the object's data type.
func typeFields(d sif.Descriptor) ([]field, error) {
	switch d.DataType() {
	case sif.DataPartition:
		fs, pt, arch, err := d.PartitionMetadata()
		return []field{{"Filesystem Type", fs.String()}, {"Partition Type", pt.String()},
			{"Architecture", arch}}, err
	case sif.DataSignature:
		ht, fp, err := d.SignatureMetadata()
		return []field{{"Hash Type", ht.String()}, {"Entity", fmt.Sprintf("%X", fp)}}, err
	case sif.DataCryptoMessage:
		ft, mt, err := d.CryptoMessageMetadata()
		return []field{{"Format Type", ft.String()}, {"Message Type", mt.String()}}, err
	case sif.DataSBOM:
		f, err := d.SBOMMetadata()
		return []field{{"Format", f.String()}}, err
	case sif.DataOCIRootIndex, sif.DataOCIBlob:
		h, err := d.OCIBlobDigest()
		return []field{{"Digest", h.String()}}, err
	}
	return nil, nil
}

var sifHashes = []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512,
	crypto.BLAKE2s_256, crypto.BLAKE2b_256}

// signatureOpt is the metadata of a Signature object.
func signatureOpt(hash int32, entity string) (sif.DescriptorInputOpt, error) {
	b, err := hex.DecodeString(entity)
	if err != nil {
		return nil, fmt.Errorf("--signentity: not hexadecimal: %w", err)
	}
	if len(b) != 20 {
		return nil, fmt.Errorf("--signentity: %d bytes, a fingerprint has 20", len(b))
	}
	if hash < 1 || int(hash) > len(sifHashes) {
		return nil, fmt.Errorf("--signhash: no hash type %d", hash)
	}
	return sif.OptSignatureMetadata(sifHashes[hash-1], b), nil
}
