package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/husk-project/husk/cmd/internal/image"
	"github.com/husk-project/husk/squash"
)

// InspectCmd is `husk inspect [flags] IMAGE`.
type InspectCmd struct {
	JSON        bool   `short:"j" help:"Print JSON."`
	All         bool   `help:"Show all the metadata, as JSON."`
	Labels      bool   `short:"l" help:"Show the labels (the default)."`
	Runscript   bool   `short:"r" help:"Show the runscript."`
	Startscript bool   `short:"s" help:"Show the startscript."`
	Test        bool   `short:"t" help:"Show the test script."`
	Environment bool   `short:"e" help:"Show the environment scripts."`
	Deffile     bool   `short:"d" help:"Show the definition file."`
	Helpfile    bool   `short:"H" help:"Show the help text."`
	App         string `placeholder:"NAME" help:"Inspect the SCIF app NAME (/scif/apps/NAME/scif)."`
	ListApps    bool   `help:"List the SCIF apps in the image."`
	Image       string `arg:"" help:"${img}"`
}

// Help implements kong.HelpProvider.
func (InspectCmd) Help() string {
	return `Shows the metadata Apptainer keeps in /.singularity.d, read from the image
in-process (nothing is mounted).

Example:
  husk inspect --json --labels --runscript debian.sif`
}

// imageReader reads files of an image's root filesystem.
type imageReader interface {
	ReadFile(name string) ([]byte, error)
	Glob(dir, suffix string) ([]string, error)
}

// Run implements `husk inspect`.
func (c *InspectCmd) Run(g *globals) error {
	img, err := image.Open(c.Image, false)
	if err != nil {
		return err
	}
	defer img.Close()
	var r imageReader
	switch {
	case img.Root == nil:
		r = dirReader(img.Path)
	case img.Root.FS != image.FSSquashfs:
		return fmt.Errorf("%s: inspect reads squashfs images and directories only", img.Path)
	default:
		fs, err := squash.Open(io.NewSectionReader(img.File, img.Root.Offset, img.Root.Size),
			img.Root.Size, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", img.Path, err)
		}
		r = &squashReader{fs: fs}
	}

	if c.ListApps {
		return listApps(r)
	}
	meta := "/.singularity.d"
	if c.App != "" {
		meta = appMeta(c.App)
		if _, err := r.Glob(meta, ""); err != nil {
			return fmt.Errorf("%s: no app %q in the image (%s)", img.Path, c.App, meta)
		}
	}
	if c.All {
		c.JSON, c.Labels, c.Runscript, c.Startscript, c.Test = true, true, true, true, true
		c.Environment, c.Deffile, c.Helpfile = true, true, true
	}
	if !(c.Runscript || c.Startscript || c.Test || c.Environment || c.Deffile ||
		c.Helpfile) {
		c.Labels = true
	}
	attrs := map[string]any{}
	var text strings.Builder
	file := func(on bool, key, name string) {
		if !on {
			return
		}
		b, err := r.ReadFile(name)
		if err != nil {
			g.Log.Debug("inspect", "file", name, "error", err)
			return
		}
		attrs[key] = string(b)
		text.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			text.WriteByte('\n')
		}
	}
	if c.Labels {
		labels := map[string]string{}
		if b, err := r.ReadFile(meta + "/labels.json"); err == nil {
			if err := json.Unmarshal(b, &labels); err != nil {
				return fmt.Errorf("%s: %s/labels.json: %w", img.Path, meta, err)
			}
		}
		attrs["labels"] = labels
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&text, "%s: %s\n", k, labels[k])
		}
	}
	file(c.Deffile, "deffile", "/.singularity.d/Singularity")
	file(c.Helpfile, "helpfile", meta+"/runscript.help")
	file(c.Runscript, "runscript", meta+"/runscript")
	file(c.Startscript, "startscript", meta+"/startscript")
	file(c.Test, "test", meta+"/test")
	if c.Environment {
		names, _ := r.Glob(meta+"/env", ".sh")
		var env strings.Builder
		for _, n := range names {
			b, err := r.ReadFile(n)
			if err != nil {
				continue
			}
			fmt.Fprintf(&env, "=== %s ===\n%s\n", n, b)
		}
		attrs["environment"] = env.String()
		text.WriteString(env.String())
	}

	if c.JSON {
		out := map[string]any{"data": map[string]any{"attributes": attrs}, "type": "container"}
		b, err := json.MarshalIndent(out, "", "    ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	fmt.Print(text.String())
	return nil
}

// dirReader reads a sandbox directory, resolving symbolic links inside it.
type dirReader string

func (d dirReader) ReadFile(name string) ([]byte, error) {
	p, err := resolveInDir(string(d), name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func (d dirReader) Glob(dir, suffix string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(string(d), dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// resolveInDir resolves name under root without leaving it.
func resolveInDir(root, name string) (string, error) {
	cur := "/"
	parts := strings.Split(strings.Trim(path.Clean(name), "/"), "/")
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", &os.PathError{Op: "open", Path: name, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts...)
		cur = "/"
	}
	return filepath.Join(root, cur), nil
}

// squashReader reads files from the image's squashfs in-process.
type squashReader struct{ fs *squash.FS }

// maxInspectFile bounds what inspect reads from one file.
const maxInspectFile = 16 << 20

func (s *squashReader) lookup(name string) (*squash.Inode, error) {
	cur := "/"
	parts := strings.Split(strings.Trim(path.Clean(name), "/"), "/")
	n, err := s.fs.Inode(s.fs.Root())
	if err != nil {
		return nil, err
	}
	dirs := []*squash.Inode{n}
	for hops := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			if len(dirs) > 1 {
				dirs = dirs[:len(dirs)-1]
				cur = path.Dir(cur)
			}
			continue
		}
		child, err := s.fs.Lookup(dirs[len(dirs)-1], p)
		if err != nil {
			return nil, err
		}
		if child.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			dirs = append(dirs, child)
			cur = path.Join(cur, p)
			continue
		}
		if hops++; hops > 40 {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ELOOP}
		}
		target, err := s.fs.Readlink(child)
		if err != nil {
			return nil, err
		}
		if path.IsAbs(target) {
			dirs, cur = dirs[:1], "/"
		}
		parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts...)
	}
	return dirs[len(dirs)-1], nil
}

func (s *squashReader) ReadFile(name string) ([]byte, error) {
	n, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if n.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, &os.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	if n.Size > maxInspectFile {
		return nil, fmt.Errorf("%s: %d bytes is too large to show", name, n.Size)
	}
	b := make([]byte, n.Size)
	got, err := s.fs.ReadAt(n, b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:got], nil
}

func (s *squashReader) Glob(dir, suffix string) ([]string, error) {
	n, err := s.lookup(dir)
	if err != nil {
		return nil, err
	}
	ents, err := s.fs.ReadDir(n)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name, suffix) {
			out = append(out, path.Join(dir, e.Name))
		}
	}
	return out, nil
}
