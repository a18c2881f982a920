package main

import (
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/husk-project/husk/sandbox"
)

// parseMounts parses --mount values as Apptainer does (Docker's syntax):
// comma-separated key[=value] fields with CSV quoting, one mount per line.
// Only type=bind exists; source/src, destination/dst/target and
// ro/readonly are used. Apptainer's image-src and id (binding out of an
// image file) are refused: husk binds host paths only.
func parseMounts(values []string) ([]sandbox.Bind, error) {
	var out []sandbox.Bind
	for _, v := range values {
		r := csv.NewReader(strings.NewReader(v))
		r.FieldsPerRecord = -1
		records, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("--mount %s: error parsing mount: %v", v, err)
		}
		for _, rec := range records {
			b, err := parseMount(rec)
			if err != nil {
				return nil, fmt.Errorf("--mount %s: %w", v, err)
			}
			out = append(out, b)
		}
	}
	return out, nil
}

func parseMount(fields []string) (sandbox.Bind, error) {
	var b sandbox.Bind
	for _, f := range fields {
		key, val, _ := strings.Cut(f, "=")
		switch key {
		case "type":
			if val != "bind" {
				return b, fmt.Errorf("unsupported mount type %q, only 'bind' is supported", val)
			}
		case "source", "src":
			if val == "" {
				return b, fmt.Errorf("mount source cannot be empty")
			}
			b.Src = val
		case "destination", "dst", "target":
			if val == "" {
				return b, fmt.Errorf("mount destination cannot be empty")
			}
			b.Dst = val
		case "ro", "readonly":
			b.ReadOnly = true
		case "image-src", "id":
			return b, fmt.Errorf("%s: binding from inside an image file is not supported "+
				"by husk", key)
		case "nonested":
		case "bind-propagation":
			return b, fmt.Errorf("bind-propagation not supported for individual mounts")
		default:
			return b, fmt.Errorf("invalid key %q in mount specification", key)
		}
	}
	if b.Src == "" || b.Dst == "" {
		return b, fmt.Errorf("mounts must specify a source and a destination")
	}
	if abs, err := filepath.Abs(b.Src); err == nil {
		b.Src = abs
	}
	if !filepath.IsAbs(b.Dst) {
		return b, fmt.Errorf("destination %s is not an absolute path", b.Dst)
	}
	switch d := filepath.Clean(b.Dst); d {
	case "/proc", "/dev", "/sys":
		return b, fmt.Errorf("cannot bind over %s, which the container needs", d)
	case "/":
		return b, fmt.Errorf("cannot bind over /, the container's root directory")
	}
	return b, nil
}

// mountSpec applies --mount, --scratch, --workdir and --dns to spec.
func mountSpec(f *ActionFlags, spec *sandbox.Spec) error {
	mounts, err := parseMounts(f.Mount)
	if err != nil {
		return err
	}
	spec.Binds = append(spec.Binds, mounts...)

	for _, list := range f.Scratch {
		for _, d := range strings.Split(list, ",") {
			d = strings.TrimSpace(d)
			if d == "" {
				continue
			}
			if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
				return fmt.Errorf("--scratch %s: want an absolute directory below /", d)
			}
			spec.Scratch = append(spec.Scratch, filepath.Clean(d))
		}
	}

	if f.Workdir != "" {
		w, err := filepath.Abs(f.Workdir)
		if err != nil {
			return fmt.Errorf("--workdir %s: %w", f.Workdir, err)
		}
		st, err := os.Stat(w)
		if err != nil {
			return fmt.Errorf("--workdir %s: %w", f.Workdir, unwrapPathErr(err))
		}
		if !st.IsDir() {
			return fmt.Errorf("--workdir %s: not a directory", f.Workdir)
		}
		spec.Workdir = w
	}

	if f.DNS != "" {
		for _, ip := range strings.Split(strings.ReplaceAll(f.DNS, " ", ""), ",") {
			if net.ParseIP(ip) == nil {
				return fmt.Errorf("--dns: dns ip %s is not a valid IP address", ip)
			}
			spec.DNS = append(spec.DNS, ip)
		}
	}
	return nil
}

// unwrapPathErr drops the *os.PathError around err when the caller names
// the path already.
func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
