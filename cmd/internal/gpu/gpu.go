// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package gpu

import (
	"bufio"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed nvliblist.conf
var nvLibList string

//go:embed rocmliblist.conf
var rocmLibList string

// LibDir is where the libraries go in the container.
const LibDir = "/.singularity.d/libs"

// Kind is a GPU vendor's driver stack.
type Kind int

const (
	// Nvidia is --nv.
	Nvidia Kind = iota
	// ROCm is --rocm.
	ROCm
)

// File is one host file to bind into the container.
type File struct {
	// Src is the host path, Dst the path in the container.
	Src, Dst string
}

// Files are the host files of a driver stack.
type Files struct {
	// Libs are the libraries, Bins the binaries, Devices the device nodes.
	Libs, Bins, Devices []File
}

// Find looks up the files of kind on this host: libraries in the ld.so
// cache, binaries on path (a PATH list), devices under /dev.
func Find(kind Kind, path string) (*Files, error) {
	list, err := libList(kind)
	if err != nil {
		return nil, err
	}
	cache, err := ReadLdCache()
	if err != nil {
		return nil, err
	}
	machine, err := elfMachine()
	if err != nil {
		return nil, err
	}
	f := &Files{}
	libs, bins := splitList(list)
	f.Libs = matchLibs(libs, cache, machine)
	for _, b := range bins {
		if p, err := lookPath(b, path); err == nil {
			f.Bins = append(f.Bins, File{Src: p, Dst: "/usr/bin/" + b})
		}
	}
	f.Devices = devices(kind)
	return f, nil
}

// confDirs are where an Apptainer installation keeps its configuration:
// an administrator's nvliblist.conf or rocmliblist.conf there replaces
// the built-in list, as it does for Apptainer.
var confDirs = []string{"/etc/apptainer", "/usr/local/etc/apptainer", "/etc/singularity",
	"/usr/local/etc/singularity"}

// libList is the list file of kind: the host's Apptainer one, if any,
// else the built-in copy.
func libList(kind Kind) (string, error) {
	name, list := "nvliblist.conf", nvLibList
	if kind == ROCm {
		name, list = "rocmliblist.conf", rocmLibList
	}
	for _, d := range confDirs {
		b, err := os.ReadFile(filepath.Join(d, name))
		if err == nil {
			return string(b), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("gpu: %w", err)
		}
	}
	return list, nil
}

// splitList reads a lib list: names containing ".so" are libraries, the
// others binaries; blank lines and # comments are skipped.
func splitList(list string) (libs, bins []string) {
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#':
		case strings.Contains(line, ".so"):
			libs = append(libs, line)
		default:
			bins = append(bins, line)
		}
	}
	return libs, bins
}

// CacheEntry is one line of `ldconfig -p`.
type CacheEntry struct {
	// Name is the library's name in the cache (its soname or file name),
	// Path the file.
	Name, Path string
}

// ReadLdCache lists the host's ld.so cache with `ldconfig -p` (or the
// cache file in _HUSK_LDCACHE), in the cache's order.
func ReadLdCache() ([]CacheEntry, error) {
	ldconfig, err := lookPath("ldconfig", "/sbin:/usr/sbin:/bin:/usr/bin")
	if err != nil {
		return nil, fmt.Errorf("gpu: ldconfig not found in /sbin or /usr/sbin: %w", err)
	}
	args := []string{"-p"}
	if c := os.Getenv("_HUSK_LDCACHE"); c != "" {
		args = append(args, "-C", c)
	}
	out, err := exec.Command(ldconfig, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("gpu: %s %s: %w", ldconfig, strings.Join(args, " "), err)
	}
	return parseLdCache(string(out)), nil
}

// parseLdCache reads lines such as
// "	libnvidia-ml.so.1 (libc6,x86-64) => /usr/lib64/libnvidia-ml.so.1".
func parseLdCache(out string) []CacheEntry {
	var ents []CacheEntry
	for _, line := range strings.Split(out, "\n") {
		left, path, ok := strings.Cut(line, " => ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(left), " (")
		if name = strings.TrimSpace(name); name != "" {
			ents = append(ents, CacheEntry{Name: name, Path: strings.TrimSpace(path)})
		}
	}
	return ents
}

// matchLibs picks the cache entries whose name starts with a listed
// library and whose file is an ELF object for machine, once per name
// (the cache lists the preferred one first).
func matchLibs(libs []string, cache []CacheEntry, machine elf.Machine) []File {
	var out []File
	seen := map[string]bool{}
	for _, lib := range libs {
		for _, e := range cache {
			if !strings.HasPrefix(e.Name, lib) || seen[e.Name] {
				continue
			}
			if !isMachine(e.Path, machine) {
				continue
			}
			seen[e.Name] = true
			out = append(out, File{Src: e.Path, Dst: LibDir + "/" + e.Name})
		}
	}
	return out
}

func isMachine(path string, machine elf.Machine) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Machine == machine
}

// elfMachine is the machine of the running husk binary.
func elfMachine() (elf.Machine, error) {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("gpu: reading the ELF machine of /proc/self/exe: %w", err)
	}
	defer f.Close()
	return f.Machine, nil
}

// devices are the device nodes of kind, bound at the same path.
func devices(kind Kind) []File {
	var globs []string
	switch kind {
	case Nvidia:
		globs = []string{"/dev/nvidia*", "/dev/nvidia-caps/*"}
	case ROCm:
		globs = []string{"/dev/kfd", "/dev/dri"}
	}
	var out []File
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil &&
				(fi.Mode()&os.ModeDevice != 0 || fi.IsDir() && kind == ROCm) {
				out = append(out, File{Src: p, Dst: p})
			}
		}
	}
	return out
}

// lookPath finds an executable file on a PATH list.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() &&
			fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}
