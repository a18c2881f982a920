// Command unionmount serves husk's union (fusefs) of a SIF's squashfs root
// under an ext3 image's or a directory's upper/ at a host directory, with
// no id mapping, until SIGINT or SIGTERM. posix.sh runs pjdfstest in it as
// host root: that measures the union's semantics alone, without the single
// uid of husk's rootless --fakeroot user namespace (chown and setuid to
// other ids fail with EINVAL there, before the union sees them).
//
// Usage (root): unionmount -sif debian.sif (-ext3 o.img | -dir DIR) MOUNTPOINT
//
// It is a measurement helper in testdata, outside `go build ./...`; build it
// with `go build -o unionmount ./testdata/posix/unionmount`.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sylabs/sif/v2/pkg/sif"

	"github.com/husk-project/husk/ext3"
	"github.com/husk-project/husk/fusefs"
	"github.com/husk-project/husk/squash"
)

func main() {
	sifPath := flag.String("sif", "", "SIF image whose system partition is the lower")
	ext3Path := flag.String("ext3", "", "ext3 overlay image (with upper/ and work/)")
	dirPath := flag.String("dir", "", "overlay directory (with upper/ and work/)")
	ready := flag.String("ready", "", "file to create once mounted")
	flag.Parse()
	if flag.NArg() != 1 || *sifPath == "" || (*ext3Path == "") == (*dirPath == "") {
		fmt.Fprintln(os.Stderr, "usage: unionmount -sif SIF (-ext3 IMG | -dir DIR) MOUNTPOINT")
		os.Exit(2)
	}
	if err := run(*sifPath, *ext3Path, *dirPath, *ready, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "unionmount:", err)
		os.Exit(1)
	}
}

func run(sifPath, ext3Path, dirPath, ready, target string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	lower, err := openLower(sifPath)
	if err != nil {
		return err
	}
	opts := fusefs.Options{Lowers: []fusefs.Layer{lower}, AllowOther: true, Logger: log}
	var closer io.Closer
	if ext3Path != "" {
		f, err := os.OpenFile(ext3Path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		fs, err := ext3.Open(ext3.NewSection(f, 0, st.Size()), st.Size(),
			ext3.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("%s: %w", ext3Path, err)
		}
		closer = fs
		if opts.Upper, opts.WorkDir, err = fusefs.NewExt3Layer(fs, true); err != nil {
			return fmt.Errorf("%s: %w", ext3Path, err)
		}
	} else {
		d, work, err := fusefs.OpenOverlayDir(dirPath, nil)
		if err != nil {
			return err
		}
		closer = d
		opts.Upper, opts.WorkDir = d, work
	}
	u, err := fusefs.New(opts)
	if err != nil {
		return err
	}
	if err := u.Mount(target); err != nil {
		return err
	}
	if ready != "" {
		if err := os.WriteFile(ready, nil, 0644); err != nil {
			u.Unmount()
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	errU := u.Unmount()
	errC := closer.Close()
	if errU != nil {
		return errU
	}
	return errC
}

// openLower opens the SIF's primary system partition as a squashfs layer.
func openLower(path string) (fusefs.Layer, error) {
	img, err := sif.LoadContainerFromPath(path, sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d, err := img.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		return nil, fmt.Errorf("%s: system partition: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fs, err := squash.Open(io.NewSectionReader(f, d.Offset(), d.Size()), d.Size(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return fusefs.NewSquashLayer(fs), nil
}
