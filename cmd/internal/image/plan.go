package image

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// LayerKind says how the sandbox serves a layer.
type LayerKind string

// Layer kinds.
const (
	// LayerSquashfs is a squashfs section; the layer is its root.
	LayerSquashfs LayerKind = "squashfs"
	// LayerExt3 is an ext3 section; the layer is its upper/ directory, and
	// as the writable layer its work/ is the work directory.
	LayerExt3 LayerKind = "ext3"
	// LayerDir is a host directory, used as is.
	LayerDir LayerKind = "dir"
	// LayerDirOverlay is a host directory overlay: upper/ and work/ when
	// writable; upper/ if present, else the directory, when read-only.
	LayerDirOverlay LayerKind = "diroverlay"
)

// Layer is one level of the union, as the sandbox receives it.
type Layer struct {
	Kind LayerKind `json:"kind"`
	// File indexes Plan.Files (and the sandbox's inherited files); -1 for
	// directories.
	File int `json:"file"`
	// Section is the filesystem inside File.
	Section Section `json:"section"`
	// Path is the image or directory, for messages and directory layers.
	Path string `json:"path"`
	// Writable is set on the upper layer only.
	Writable bool `json:"writable,omitempty"`
}

// Plan is the layer stack for one container run, serialised as JSON into
// the sandbox spec. Files are not serialised: they travel as inherited
// descriptors in the same order.
type Plan struct {
	// Upper is the writable layer; nil when the union is read-only or
	// WritableTmpfs supplies it.
	Upper *Layer `json:"upper,omitempty"`
	// Lowers are the read-only layers, top first; the root filesystem is
	// last.
	Lowers []Layer `json:"lowers"`
	// WritableTmpfs asks for a memory-backed upper of TmpfsSize bytes.
	WritableTmpfs bool  `json:"writable_tmpfs,omitempty"`
	TmpfsSize     int64 `json:"tmpfs_size,omitempty"`
	// CacheBytes is the cache budget of each squashfs layer
	// (squash.Options.MemoryBytes); 0 means the package's default.
	CacheBytes int64 `json:"cache_bytes,omitempty"`

	Files  []*os.File `json:"-"`
	images []*Image
}

// TmpfsSize is the size of the --writable-tmpfs upper: Apptainer's default
// "sessiondir max size" for non-root users (COMPAT §6).
const TmpfsSize = 64 << 20

// OverlayArg is one parsed --overlay value.
type OverlayArg struct {
	Path     string
	ReadOnly bool
}

// ParseOverlayArgs parses --overlay values (already split at commas): each
// is split at its first ':' and the remainder must be "ro" or "rw" (COMPAT
// §3.2). Apptainer opens the image writable for any other suffix, so a
// typo such as ":RO" would write to an image meant to stay untouched;
// husk refuses it, and an empty value. Paths containing ':' cannot be
// used.
func ParseOverlayArgs(values []string) ([]OverlayArg, error) {
	var out []OverlayArg
	for _, v := range values {
		path, rest, hasOpt := strings.Cut(v, ":")
		if path == "" {
			return nil, fmt.Errorf("--overlay %q: want an image path[:ro|rw]", v)
		}
		arg := OverlayArg{Path: path}
		switch {
		case !hasOpt || rest == "rw":
		case rest == "ro":
			arg.ReadOnly = true
		default:
			return nil, fmt.Errorf("--overlay %s: unknown option %q (want ro or rw)", v, rest)
		}
		out = append(out, arg)
	}
	return out, nil
}

// ParseOverlays is ParseOverlayArgs for values known to be valid, as in
// tests: invalid ones are left out.
func ParseOverlays(values []string) []OverlayArg {
	var out []OverlayArg
	for _, v := range values {
		if a, err := ParseOverlayArgs([]string{v}); err == nil {
			out = append(out, a...)
		}
	}
	return out
}

// Request is what the action flags ask for.
type Request struct {
	Image         string
	Overlays      []OverlayArg
	Writable      bool
	WritableTmpfs bool
}

// NewPlan opens the root image and overlays, locks the ext3 sections and
// stacks the layers as Apptainer does (COMPAT §3.2-§3.3, §6). On error all
// files are closed. Warnings go to log (nil: discarded).
func NewPlan(req Request, log *slog.Logger) (_ *Plan, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if req.Writable && len(req.Overlays) > 0 {
		return nil, fmt.Errorf("cannot use --overlay in conjunction with --writable")
	}
	if req.Writable && req.WritableTmpfs {
		log.Warn("Disabling --writable-tmpfs flag, mutually exclusive with --writable")
		req.WritableTmpfs = false
	}
	p := &Plan{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	root, err := p.open(req.Image, req.Writable)
	if err != nil {
		return nil, err
	}
	rootLayers, err := p.rootLayers(root, req.Writable, log)
	if err != nil {
		return nil, err
	}
	var lowers []Layer // bottom first while building
	lowers = append(lowers, rootLayers...)
	for _, ov := range req.Overlays {
		ls, err := p.overlayLayers(ov, log)
		if err != nil {
			return nil, err
		}
		lowers = append(lowers, ls...)
	}
	for i := len(lowers) - 1; i >= 0; i-- {
		p.Lowers = append(p.Lowers, lowers[i])
	}

	if req.WritableTmpfs {
		if p.Upper != nil {
			return nil, fmt.Errorf("you can't specify --writable-tmpfs with another writable "+
				"overlay image (%s)", p.Upper.Path)
		}
		p.WritableTmpfs, p.TmpfsSize = true, TmpfsSize
	}
	return p, nil
}

// Close closes every image file of the plan, dropping their locks.
func (p *Plan) Close() {
	for _, img := range p.images {
		img.Close()
	}
	p.images, p.Files = nil, nil
}

// open opens an image and registers its file.
func (p *Plan) open(path string, writable bool) (*Image, error) {
	img, err := Open(path, writable)
	if err != nil {
		return nil, err
	}
	p.images = append(p.images, img)
	return img, nil
}

// fileIndex returns img's index in Files, adding it on first use.
func (p *Plan) fileIndex(img *Image) int {
	for i, f := range p.Files {
		if f == img.File {
			return i
		}
	}
	p.Files = append(p.Files, img.File)
	return len(p.Files) - 1
}

// setUpper makes l the writable layer, refusing a second one.
func (p *Plan) setUpper(l Layer, arg string) error {
	if p.Upper != nil {
		return fmt.Errorf("you can't specify more than one writable overlay, %s contains a "+
			"writable overlay, requires to use '--overlay %s:ro'", p.Upper.Path, arg)
	}
	l.Writable = true
	p.Upper = &l
	return nil
}

// rootLayers returns the root image's layers, bottom first: the root
// filesystem, then its read-only embedded overlays. The writable embedded
// overlay (with --writable) becomes the upper.
func (p *Plan) rootLayers(img *Image, writable bool, log *slog.Logger) ([]Layer, error) {
	switch img.Kind {
	case KindDir:
		l := Layer{Kind: LayerDir, File: -1, Path: img.Path}
		if !writable {
			return []Layer{l}, nil
		}
		if !img.Writable {
			return nil, fmt.Errorf("could not use %s for writing, you don't have write "+
				"permissions", img.Path)
		}
		return nil, p.setUpper(l, img.Path)
	case KindSquashfs:
		if writable {
			return nil, fmt.Errorf("could not set %s image writable: squashfs is a read-only "+
				"filesystem", img.Path)
		}
	case KindExt3:
		// TODO: serve a whole ext3 filesystem as the root layer; the ext3
		// layer adapter only exposes upper/.
		return nil, fmt.Errorf("%s: ext3 images as root filesystem are not supported", img.Path)
	}
	layers := []Layer{{Kind: LayerSquashfs, File: p.fileIndex(img), Section: *img.Root,
		Path: img.Path}}
	if img.Kind != KindSIF {
		return layers, nil
	}
	if writable && !img.Writable {
		return nil, fmt.Errorf("could not use %s for writing, you don't have write permissions",
			img.Path)
	}
	if writable && !hasExt3Overlay(img) {
		if err := img.BadExt3Overlay(); err != nil {
			return nil, err
		}
	}
	ls, err := p.sifOverlays(img, writable, img.Path, log)
	if err != nil {
		return nil, err
	}
	if writable && p.Upper == nil {
		return nil, fmt.Errorf("no SIF writable overlay partition found in %s", img.Path)
	}
	return append(layers, ls...), nil
}

// sifOverlays turns a SIF's overlay partitions into layers: the first ext3
// one becomes the upper when writable, the others are read-only lowers.
func (p *Plan) sifOverlays(img *Image, writable bool, arg string,
	log *slog.Logger) ([]Layer, error) {
	for _, b := range img.BadParts {
		log.Warn(fmt.Sprintf("%v: ignoring it", b.Error(img.Path)))
	}
	var lowers []Layer
	for _, sec := range img.Overlays {
		l := Layer{Kind: LayerKind(sec.FS), File: p.fileIndex(img), Section: sec, Path: img.Path}
		rw := writable && sec.FS == FSExt3 && sec.Overlay && p.Upper == nil
		if err := Lock(img, sec, rw, log); err != nil {
			return nil, err
		}
		if rw {
			if err := p.setUpper(l, arg); err != nil {
				return nil, err
			}
			continue
		}
		lowers = append(lowers, l)
	}
	return lowers, nil
}

// overlayLayers opens one --overlay argument and returns its read-only
// layers (bottom first); a writable one becomes the upper.
func (p *Plan) overlayLayers(ov OverlayArg, log *slog.Logger) ([]Layer, error) {
	img, err := p.open(ov.Path, !ov.ReadOnly)
	if err != nil {
		return nil, err
	}
	writable := !ov.ReadOnly
	notWritable := func() {
		log.Warn(fmt.Sprintf("Overlay image %s is not writable, proceeding with read-only",
			img.Path))
		writable = false
	}
	switch {
	case img.Kind == KindSquashfs:
		// Always a read-only layer: nothing to warn about.
		writable = false
	case writable && !img.Writable:
		notWritable()
	}

	switch img.Kind {
	case KindDir:
		l := Layer{Kind: LayerDirOverlay, File: -1, Path: img.Path}
		if err := LockDir(img, writable, log); err != nil {
			return nil, err
		}
		if f := img.DirLockFile(); f != nil {
			// Inherited like the images, so that the lock lasts as long
			// as the container, even past a killed husk.
			p.Files = append(p.Files, f)
		}
		if writable {
			return nil, p.setUpper(l, ov.Path)
		}
		return []Layer{l}, nil
	case KindSquashfs:
		return []Layer{{Kind: LayerSquashfs, File: p.fileIndex(img), Section: *img.Root,
			Path: img.Path}}, nil
	case KindExt3:
		l := Layer{Kind: LayerExt3, File: p.fileIndex(img), Section: *img.Root, Path: img.Path}
		if err := Lock(img, *img.Root, writable, log); err != nil {
			return nil, err
		}
		if writable {
			return nil, p.setUpper(l, ov.Path)
		}
		return []Layer{l}, nil
	}
	// A SIF as overlay: only its overlay and data partitions count.
	if len(img.Overlays) == 0 && len(img.BadParts) == 0 {
		log.Warn(fmt.Sprintf("--overlay %s: the SIF has no overlay partition, nothing of it "+
			"is used (add one with 'husk overlay create %s')", ov.Path, ov.Path))
	}
	return p.sifOverlays(img, writable, ov.Path, log)
}

// hasExt3Overlay says whether the SIF has a usable ext3 overlay partition.
func hasExt3Overlay(img *Image) bool {
	for _, s := range img.Overlays {
		if s.Overlay && s.FS == FSExt3 {
			return true
		}
	}
	return false
}

// Describe returns a one-line summary of the stack, top first, for debug
// logs.
func (p *Plan) Describe() string {
	var parts []string
	name := func(l Layer) string {
		s := string(l.Kind) + ":" + filepath.Base(l.Path)
		if l.Section.ID != 0 {
			s += fmt.Sprintf("#%d", l.Section.ID)
		}
		return s
	}
	switch {
	case p.Upper != nil:
		parts = append(parts, "upper="+name(*p.Upper))
	case p.WritableTmpfs:
		parts = append(parts, "upper=tmpfs")
	}
	for _, l := range p.Lowers {
		parts = append(parts, name(l))
	}
	return strings.Join(parts, " ")
}
