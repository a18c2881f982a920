package ext3

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// TestConcurrent runs many goroutines creating, writing, reading, renaming
// and deleting at once, with frequent commits, then checks with e2fsck.
func TestConcurrent(t *testing.T) {
	img := mkext3(t, 128<<20, "-b", "1024")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := Open(NewSection(fh, 0, 128<<20), 128<<20, Options{CommitInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	shared := mustA(t)(f.Mkdir(RootIno, "shared", 0o755, 0, 0))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			if err := worker(f, shared.Ino, w); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if err := f.Sync(); err != nil {
				errs <- err
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	noErr(t, f.Close())
	fsck(t, img)
}

func worker(f *FS, shared uint32, w int) error {
	own, err := f.Mkdir(RootIno, fmt.Sprintf("w%d", w), 0o755, 0, 0)
	if err != nil {
		return err
	}
	data := bytes.Repeat([]byte{byte(w)}, 10000)
	for i := 0; i < 150; i++ {
		dir := own.Ino
		if i%2 == 0 {
			dir = shared
		}
		name := fmt.Sprintf("f-%d-%d", w, i)
		a, err := f.Create(dir, name, 0o644, 0, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(a.Ino, data[:1000+i*50], int64(i*100)); err != nil {
			return err
		}
		got := make([]byte, 1000+i*50)
		if _, err := f.ReadAt(a.Ino, got, int64(i*100)); err != nil {
			return err
		}
		if !bytes.Equal(got, data[:len(got)]) {
			return fmt.Errorf("%s: read back differs", name)
		}
		if err := f.Setxattr(a.Ino, "user.w", []byte(name), 0); err != nil {
			return err
		}
		switch i % 5 {
		case 0:
			if err := f.Unlink(dir, name); err != nil {
				return err
			}
		case 1:
			if err := f.Rename(dir, name, own.Ino, name+"-moved", 0); err != nil {
				return err
			}
		case 2:
			if _, err := f.Setattr(a.Ino, SetAttr{SetSize: true, Size: 10}); err != nil {
				return err
			}
		}
		if _, err := f.ReadDir(shared); err != nil {
			return err
		}
	}
	return nil
}
