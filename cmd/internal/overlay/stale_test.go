package overlay

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sylabs/sif/v2/pkg/sif"
)

// TestCreateKilledHelper is the create that TestCreateAfterKill kills: it
// stops, marked, after copying 70 MiB of the overlay into the SIF.
func TestCreateKilledHelper(t *testing.T) {
	img := os.Getenv("HUSK_KILLED_CREATE")
	if img == "" {
		return // only as TestCreateAfterKill's child
	}
	copyHook = func(n int64) {
		if n >= 70<<20 {
			os.WriteFile(img+".copying", nil, 0o644)
			select {} // until SIGKILL
		}
	}
	t.Fatal(Create(img, Options{SizeMiB: 100}))
}

// TestCreateAfterKill kills a create in the middle of appending its
// overlay to a SIF, as the trial did with SIGKILL: the SIF is left longer
// and the staging file stays. The next create removes both and succeeds,
// and the SIF ends exactly where its new, smaller overlay does.
func TestCreateAfterKill(t *testing.T) {
	img := mkSIF(t, sif.FsSquash)
	before, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCreateKilledHelper$")
	cmd.Env = append(os.Environ(), "HUSK_KILLED_CREATE="+img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(img + ".copying"); err == nil {
			break
		}
		if i == 600 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the helper create never reached the copy into the SIF")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// Another create refuses while a live creator holds its staging file;
	// this one is dead: its leftovers are there to be found.
	temps, _ := filepath.Glob(img + tempMid + "*" + tempExt)
	grown, _ := os.Stat(img)
	if len(temps) != 1 || grown.Size() <= before.Size()+69<<20 {
		t.Fatalf("after the kill: temps %v, SIF %d bytes (was %d)", temps, grown.Size(),
			before.Size())
	}
	if err := Create(img, Options{SizeMiB: 64, Sparse: true}); err != nil {
		t.Fatalf("create after a killed create: %v", err)
	}
	if temps, _ := filepath.Glob(img + tempMid + "*" + tempExt); len(temps) != 0 {
		t.Errorf("staging files left: %v", temps)
	}
	d := overlayDescriptor(t, img)
	st, _ := os.Stat(img)
	if d.Size() != 64<<20 || d.Offset()+d.Size() != st.Size() {
		t.Errorf("overlay at %d, %d bytes; SIF %d bytes", d.Offset(), d.Size(), st.Size())
	}
	tool(t, "e2fsck", "-fn", img+"?offset="+strconv.FormatInt(d.Offset(), 10))
}

// A staging file whose creator holds its lock makes a second create
// refuse, and is kept; bytes past a SIF's data that are not an overlay's
// start are kept too.
func TestCreateLeavesLiveAndForeign(t *testing.T) {
	img := mkSIF(t, sif.FsSquash)
	tmp, err := createTemp(img)
	if err != nil {
		t.Fatal(err)
	}
	err = Create(img, Options{SizeMiB: 64, Sparse: true})
	if err == nil || !strings.Contains(err.Error(), "another 'overlay create' on "+img+
		" is running (pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("create beside a live one: %v", err)
	}
	if _, err := os.Stat(tmp.Name()); err != nil {
		t.Fatalf("live staging file removed: %v", err)
	}
	tmp.Close()
	os.Remove(tmp.Name())

	f, err := os.OpenFile(img, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("appended by someone, not an overlay")
	f.Close()
	st, _ := os.Stat(img)
	f, _ = os.OpenFile(img, os.O_RDWR, 0)
	n, err := trimInterrupted(f)
	f.Close()
	if after, _ := os.Stat(img); err != nil || n != 0 || after.Size() != st.Size() {
		t.Errorf("foreign trailing bytes: trimmed %d (%v), %d -> %d bytes", n, err,
			st.Size(), after.Size())
	}
}
