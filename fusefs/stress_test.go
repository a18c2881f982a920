package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// The concurrent stress test: workers change names in the same
// directories of an ext3 upper over a squashfs lower (copy-ups, creates,
// renames within and across directories, renames of lower directories,
// unlinks, mkdir and rmdir) while walkers list, stat and read the whole
// tree. Each worker's changes have one possible outcome, so the tree
// after a remount is checked name by name, and e2fsck checks the image.

const (
	stressDirs    = 8
	stressWorkers = 6
)

// stressLower is the squashfs content: in every shared directory, per
// worker, a file to append to, a file to delete and a directory to move.
func stressLower() []string {
	var spec []string
	for i := 0; i < stressDirs; i++ {
		for w := 0; w < stressWorkers; w++ {
			d := fmt.Sprintf("d%d/", i)
			spec = append(spec, fmt.Sprintf("%sf%d=x", d, w), fmt.Sprintf("%sg%d=gone", d, w))
			for k := 0; k < 3; k++ {
				spec = append(spec, fmt.Sprintf("%ssub%d/s%d=%d", d, w, k, k))
			}
			spec = append(spec, fmt.Sprintf("%ssub%d/deep/z=z", d, w))
		}
	}
	return spec
}

// stressWork is worker w's share: it only touches names carrying its
// number, but in every directory, so the workers contend for the same
// directories all the time.
func stressWork(mnt string, w int) error {
	for i := 0; i < stressDirs; i++ {
		d := filepath.Join(mnt, fmt.Sprintf("d%d", i))
		next := filepath.Join(mnt, fmt.Sprintf("d%d", (i+1)%stressDirs))
		c := filepath.Join(d, fmt.Sprintf("c%d", w))
		if err := os.WriteFile(c, []byte(fmt.Sprintf("%d%d", w, i)), 0644); err != nil {
			return err
		}
		if err := os.Rename(c, c+"x"); err != nil { // same directory
			return err
		}
		if err := os.Rename(c+"x", filepath.Join(next, fmt.Sprintf("r%d_%d", w, i))); err != nil {
			return err
		}
		fh, err := os.OpenFile(filepath.Join(d, fmt.Sprintf("f%d", w)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = fh.WriteString(fmt.Sprint(w))
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(d, fmt.Sprintf("g%d", w))); err != nil {
			return err
		}
		// A lower directory moves to another directory (copied up whole).
		sub := filepath.Join(d, fmt.Sprintf("sub%d", w))
		if err := os.Rename(sub, filepath.Join(next, fmt.Sprintf("moved%d_%d", w, i))); err != nil {
			return err
		}
		m := filepath.Join(d, fmt.Sprintf("m%d", w))
		if err := os.Mkdir(m, 0755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(m, "t"), nil, 0644); err != nil {
			return err
		}
		if err := os.RemoveAll(m); err != nil {
			return err
		}
	}
	return nil
}

// stressWant is the tree after every worker is done.
func stressWant() []string {
	var want []string
	for i := 0; i < stressDirs; i++ {
		d := fmt.Sprintf("d%d", i)
		prev := (i + stressDirs - 1) % stressDirs
		want = append(want, d+"/")
		for w := 0; w < stressWorkers; w++ {
			want = append(want, fmt.Sprintf("%s/f%d=x%d", d, w, w),
				fmt.Sprintf("%s/r%d_%d=%d%d", d, w, prev, w, prev))
			mv := fmt.Sprintf("%s/moved%d_%d", d, w, prev)
			want = append(want, mv+"/", mv+"/deep/", mv+"/deep/z=z")
			for k := 0; k < 3; k++ {
				want = append(want, fmt.Sprintf("%s/s%d=%d", mv, k, k))
			}
		}
	}
	return want
}

// stressWalk lists, stats and reads the tree until stop is closed.
func stressWalk(mnt string, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				os.ReadFile(p)
			}
			var st syscall.Stat_t
			syscall.Lstat(p, &st)
			return nil
		})
	}
}

func TestConcurrentStress(t *testing.T) {
	f := newImageFixture(t, stressLower()...)
	mnt, stop := f.mount()
	var work, walk sync.WaitGroup
	done := make(chan struct{})
	for k := 0; k < 3; k++ {
		walk.Add(1)
		go func() { defer walk.Done(); stressWalk(mnt, done) }()
	}
	errs := make([]error, stressWorkers)
	for w := 0; w < stressWorkers; w++ {
		work.Add(1)
		go func(w int) { defer work.Done(); errs[w] = stressWork(mnt, w) }(w)
	}
	work.Wait()
	close(done)
	walk.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
		}
	}
	want := stressWant()
	wantListing(t, mnt, want...)
	stop()
	f.fsck()
	mnt2, stop2 := f.mount()
	wantListing(t, mnt2, want...)
	stop2()
	f.fsck()
}
