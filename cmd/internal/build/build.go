// Package build implements `husk build OUT.sif ROOTFS_DIR`: it packs a root
// filesystem directory with mksquashfs and wraps the squashfs in a SIF laid
// out as `apptainer build` does (COMPAT §9): launch line
// "#!/usr/bin/env run-singularity\n", 48 descriptor slots, and one FS
// partition of type Squashfs/PrimSys in group 1, aligned to 4096 bytes,
// whose arch comes from the rootfs's ELF binaries (the host's if none is
// found). The file gets mode 0755.
//
// Not done: no Def.FILE or inspect-metadata.json objects, no
// /.singularity.d skeleton is added to the rootfs, and no signing.
package build

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/sylabs/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"
)

// LaunchScript is the first line of every SIF Apptainer builds.
const LaunchScript = "#!/usr/bin/env run-singularity\n"

// MissingMksquashfs is the error text when mksquashfs cannot be found.
const MissingMksquashfs = "husk build needs mksquashfs (Debian: apt-get install squashfs-tools)"

// Build makes the SIF out from the directory rootfs. An existing out is
// replaced only with force: Apptainer's build asks first and, without a
// terminal, refuses. stderr receives mksquashfs's complaints.
func Build(out, rootfs string, force bool, stderr *bytes.Buffer) error {
	if !force {
		if err := refuseExisting(out); err != nil {
			return err
		}
	}
	// mksquashfs would pack a symbolic link given as source as the link
	// itself.
	if real, err := filepath.EvalSymlinks(rootfs); err == nil {
		rootfs = real
	}
	st, err := os.Stat(rootfs)
	if err != nil {
		return fmt.Errorf("root filesystem %s: %w", rootfs, unwrap(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("root filesystem %s is not a directory", rootfs)
	}
	mksquashfs, err := lookTool("mksquashfs")
	if err != nil {
		return errors.New(MissingMksquashfs)
	}

	dir := filepath.Dir(out)
	sqfs, err := os.CreateTemp(dir, ".husk-build-*.sqfs")
	if err != nil {
		return fmt.Errorf("temporary squashfs next to %s: %w", out, err)
	}
	sqfs.Close()
	defer os.Remove(sqfs.Name())

	// As Apptainer: gzip, default block size. Without root the file
	// owners cannot all be read back faithfully, so everything is root's
	// (Apptainer does the same when proot is not there).
	args := []string{rootfs, sqfs.Name(), "-noappend", "-comp", "gzip", "-quiet"}
	if os.Geteuid() != 0 {
		args = append(args, "-all-root")
	}
	cmd := exec.Command(mksquashfs, args...)
	cmd.Stderr, cmd.Stdout = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mksquashfs %s: %w: %s", rootfs, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return writeSIF(out, sqfs.Name(), elfArch(rootfs), force)
}

// refuseExisting fails when out exists (a dangling symbolic link too).
func refuseExisting(out string) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s already exists; use --force to overwrite", out)
	}
	return nil
}

// writeSIF writes the SIF to a temporary name next to out and renames it
// into place, so out is never a half-written image.
func writeSIF(out, sqfsPath, arch string, force bool) error {
	sq, err := os.Open(sqfsPath)
	if err != nil {
		return err
	}
	defer sq.Close()
	di, err := sif.NewDescriptorInput(sif.DataPartition, sq,
		sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, arch))
	if err != nil {
		return fmt.Errorf("SIF partition: %w", err)
	}

	tmp := out + ".tmp"
	fi, err := sif.CreateContainerAtPath(tmp,
		sif.OptCreateWithLaunchScript(LaunchScript),
		sif.OptCreateWithDescriptors(di))
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("creating %s: %w", out, err)
	}
	if err := fi.UnloadContainer(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := moveIntoPlace(tmp, out, force); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// moveIntoPlace renames tmp to out; without force it will not replace an
// out that appeared while mksquashfs ran (RENAME_NOREPLACE, or a check
// where the file system lacks it).
func moveIntoPlace(tmp, out string, force bool) error {
	if !force {
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, out, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s already exists; use --force to overwrite", out)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("moving %s into place: %w", out, err)
		}
		if err := refuseExisting(out); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("moving %s into place: %w", out, err)
	}
	return nil
}

// elfArch guesses the rootfs architecture from its shell or any ELF in
// the usual binary directories, falling back to the host's.
func elfArch(rootfs string) string {
	for _, p := range []string{"bin/sh", "usr/bin/env", "bin/busybox", "usr/bin/ls"} {
		path := filepath.Join(rootfs, p)
		if real, err := filepath.EvalSymlinks(path); err == nil {
			// Absolute symlinks point into the rootfs, not the host.
			if rel, err := filepath.Rel(rootfs, real); err != nil || filepath.IsAbs(rel) ||
				len(rel) > 1 && rel[:2] == ".." {
				continue
			}
			path = real
		}
		f, err := elf.Open(path)
		if err != nil {
			continue
		}
		m := f.Machine
		f.Close()
		if a := goArch(m, f.Class, f.ByteOrder.String()); a != "" {
			return a
		}
	}
	return runtime.GOARCH
}

// goArch maps an ELF machine to a Go arch name.
func goArch(m elf.Machine, class elf.Class, order string) string {
	is64 := class == elf.ELFCLASS64
	little := order == "LittleEndian"
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_386:
		return "386"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_PPC64:
		if little {
			return "ppc64le"
		}
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_RISCV:
		if is64 {
			return "riscv64"
		}
	case elf.EM_LOONGARCH:
		return "loong64"
	case elf.EM_MIPS:
		switch {
		case is64 && little:
			return "mips64le"
		case is64:
			return "mips64"
		case little:
			return "mipsle"
		}
		return "mips"
	}
	return ""
}

// sbinDirs are searched after PATH.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// lookTool finds a tool on PATH or in the sbin directories a user's PATH
// often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
