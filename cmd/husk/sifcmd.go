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
	"text/tabwriter"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// `husk sif` is Apptainer's `sif` (siftool) command, built on the same
// library and printing the same tables (COMPAT §9); the output code follows
// sylabs/sif's internal/app/siftool (BSD-3-Clause).

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

func withSIF(path string, writable bool, fn func(*sif.FileImage) error) error {
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
			return err
		}
		return writeSIFInfo(os.Stdout, d)
	})
}

// Run implements `husk sif dump`.
func (c *SifDumpCmd) Run(g *globals) error {
	return withSIF(c.Path, false, func(f *sif.FileImage) error {
		d, err := f.GetDescriptor(sif.WithID(c.ID))
		if err != nil {
			return err
		}
		_, err = io.CopyN(os.Stdout, d.GetReader(), d.Size())
		return err
	})
}

// Run implements `husk sif new`.
func (c *SifNewCmd) Run(g *globals) error {
	f, err := sif.CreateContainerAtPath(c.Path)
	if err != nil {
		return err
	}
	return f.UnloadContainer()
}

// Run implements `husk sif del`.
func (c *SifDelCmd) Run(g *globals) error {
	return withSIF(c.Path, true, func(f *sif.FileImage) error {
		return f.DeleteObject(c.ID)
	})
}

// Run implements `husk sif setprim`.
func (c *SifSetprimCmd) Run(g *globals) error {
	return withSIF(c.Path, true, func(f *sif.FileImage) error {
		return f.SetPrimPart(c.ID)
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
		return f.AddObject(input)
	})
}

// readableSize is a size in B, KiB, MiB ... as siftool prints it.
func readableSize(size int64) string {
	if -1024 < size && size < 1024 {
		return fmt.Sprintf("%d B", size)
	}
	units := "KMGTPE"
	div, exp := uint64(1024), 0
	for n := size / 1024; (n <= -1024) || (1024 <= n); n /= 1024 {
		div *= 1024
		exp++
	}
	return fmt.Sprintf("%.0f %ciB", math.Round(float64(size)/float64(div)), units[exp])
}

const nilUUID = "00000000-0000-0000-0000-000000000000"

func writeSIFHeader(w io.Writer, f *sif.FileImage) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	if s := f.LaunchScript(); s != "" {
		fmt.Fprintf(tw, "Launch Script:\t%v\n", strings.TrimSuffix(s, "\n"))
	}
	fmt.Fprintf(tw, "Version:\t%v\n", f.Version())
	if arch := f.PrimaryArch(); arch != "unknown" {
		fmt.Fprintf(tw, "Primary Architecture:\t%v\n", arch)
	}
	if id := f.ID(); id != nilUUID {
		fmt.Fprintf(tw, "ID:\t%v\n", id)
	}
	if t := f.CreatedAt(); !t.IsZero() {
		fmt.Fprintf(tw, "Created At:\t%v\n", t.UTC())
	}
	if t := f.ModifiedAt(); !t.IsZero() {
		fmt.Fprintf(tw, "Modified At:\t%v\n", t.UTC())
	}
	fmt.Fprintf(tw, "Descriptors Free:\t%v\n", f.DescriptorsFree())
	fmt.Fprintf(tw, "Descriptors Total:\t%v\n", f.DescriptorsTotal())
	fmt.Fprintf(tw, "Descriptors Offset:\t%v\n", f.DescriptorsOffset())
	fmt.Fprintf(tw, "Descriptors Size:\t%v\n", readableSize(f.DescriptorsSize()))
	fmt.Fprintf(tw, "Data Offset:\t%v\n", f.DataOffset())
	fmt.Fprintf(tw, "Data Size:\t%v\n", readableSize(f.DataSize()))
	return tw.Flush()
}

const sifRule = "------------------------------------------------------------------------------"

func writeSIFList(w io.Writer, f *sif.FileImage) {
	fmt.Fprintln(w, sifRule)
	fmt.Fprintf(w, "%-4s %-8s %-8s %-26s %s\n", "ID", "|GROUP", "|LINK",
		"|SIF POSITION (start-end)", "|TYPE")
	fmt.Fprintln(w, sifRule)
	f.WithDescriptors(func(d sif.Descriptor) bool {
		fmt.Fprintf(w, "%-4d ", d.ID())
		if id := d.GroupID(); id == 0 {
			fmt.Fprintf(w, "|%-7s ", "NONE")
		} else {
			fmt.Fprintf(w, "|%-7d ", id)
		}
		switch id, isGroup := d.LinkedID(); {
		case id == 0:
			fmt.Fprintf(w, "|%-7s ", "NONE")
		case isGroup:
			fmt.Fprintf(w, "|%-3d (G) ", id)
		default:
			fmt.Fprintf(w, "|%-7d ", id)
		}
		fmt.Fprintf(w, "%-26s ", fmt.Sprintf("|%d-%d ", d.Offset(), d.Offset()+d.Size()))
		fmt.Fprintf(w, "|%s\n", sifTypeDetail(d))
		return false
	})
}

// sifTypeDetail is the TYPE column: the data type and its metadata.
func sifTypeDetail(d sif.Descriptor) string {
	switch dt := d.DataType(); dt {
	case sif.DataPartition:
		if fs, pt, arch, err := d.PartitionMetadata(); err == nil {
			return fmt.Sprintf("%s (%s/%s/%s)", dt, fs, pt, arch)
		}
	case sif.DataSignature:
		if ht, _, err := d.SignatureMetadata(); err == nil {
			return fmt.Sprintf("%s (%s)", dt, ht)
		}
	case sif.DataCryptoMessage:
		if ft, mt, err := d.CryptoMessageMetadata(); err == nil {
			return fmt.Sprintf("%s (%s/%s)", dt, ft, mt)
		}
	case sif.DataSBOM:
		if f, err := d.SBOMMetadata(); err == nil {
			return fmt.Sprintf("%s (%s)", dt, f)
		}
	default:
		return dt.String()
	}
	return d.DataType().String()
}

func writeSIFInfo(w io.Writer, v sif.Descriptor) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tData Type:\t%v\n", v.DataType())
	fmt.Fprintf(tw, "\tID:\t%v\n", v.ID())
	fmt.Fprint(tw, "\tGroup ID:\t")
	if id := v.GroupID(); id == 0 {
		fmt.Fprintln(tw, "NONE")
	} else {
		fmt.Fprintln(tw, id)
	}
	fmt.Fprint(tw, "\tLinked ID:\t")
	switch id, isGroup := v.LinkedID(); {
	case id == 0:
		fmt.Fprintln(tw, "NONE")
	case isGroup:
		fmt.Fprintln(tw, id, "(G)")
	default:
		fmt.Fprintln(tw, id)
	}
	fmt.Fprintf(tw, "\tOffset:\t%v\n", v.Offset())
	fmt.Fprintf(tw, "\tSize:\t%v\n", v.Size())
	if t := v.CreatedAt(); !t.IsZero() {
		fmt.Fprintf(tw, "\tCreated At:\t%v\n", t.UTC())
	}
	if t := v.ModifiedAt(); !t.IsZero() {
		fmt.Fprintf(tw, "\tModified At:\t%v\n", t.UTC())
	}
	if nm := v.Name(); nm != "" {
		fmt.Fprintf(tw, "\tName:\t%v\n", nm)
	}
	switch v.DataType() {
	case sif.DataPartition:
		fs, pt, arch, err := v.PartitionMetadata()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\tFilesystem Type:\t%v\n", fs)
		fmt.Fprintf(tw, "\tPartition Type:\t%v\n", pt)
		fmt.Fprintf(tw, "\tArchitecture:\t%v\n", arch)
	case sif.DataSignature:
		ht, fp, err := v.SignatureMetadata()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\tHash Type:\t%v\n", ht)
		if len(fp) > 0 {
			fmt.Fprintf(tw, "\tEntity:\t%X\n", fp)
		}
	case sif.DataCryptoMessage:
		ft, mt, err := v.CryptoMessageMetadata()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\tFormat Type:\t%v\n", ft)
		fmt.Fprintf(tw, "\tMessage Type:\t%v\n", mt)
	case sif.DataSBOM:
		f, err := v.SBOMMetadata()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\tFormat:\t%v\n", f)
	case sif.DataOCIRootIndex, sif.DataOCIBlob:
		h, err := v.OCIBlobDigest()
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "\tDigest:\t%s\n", h)
	}
	return tw.Flush()
}

var sifHashes = []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512,
	crypto.BLAKE2s_256, crypto.BLAKE2b_256}

// signatureOpt is the metadata of a Signature object.
func signatureOpt(hash int32, entity string) (sif.DescriptorInputOpt, error) {
	b, err := hex.DecodeString(entity)
	if err != nil {
		return nil, fmt.Errorf("failed to decode signing entity fingerprint: %w", err)
	}
	if len(b) != 20 {
		return nil, fmt.Errorf("invalid signing entity fingerprint length: got %d, want 20",
			len(b))
	}
	if hash < 1 || int(hash) > len(sifHashes) {
		return nil, fmt.Errorf("invalid hash type: %d", hash)
	}
	return sif.OptSignatureMetadata(sifHashes[hash-1], b), nil
}
