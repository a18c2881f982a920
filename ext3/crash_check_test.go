package ext3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The checker replays a workload's event log (crash_workload_test.go)
// into a model of every state each file may be in, then compares the
// image with it:
//   - a file whose fsync returned (or that existed at a returned
//     syncfs, or at a clean close) must be found at its path at that
//     time or at a later one it was renamed to, with the synced content
//     or a later one, unless it was unlinked or renamed over later;
//   - every byte of a file must come from one of those states (writes
//     that were not synced may or may not be there, torn at any block,
//     but no byte may come from another file or from nowhere);
//   - every file in the run's tree must be one the log made at that
//     path, with content from one of its states.

// crashState is one content of a file and its user.crash xattr.
type crashState struct {
	content []byte
	xattr   []byte // nil: no xattr
}

// crashModelObj is one file of the model.
type crashModelObj struct {
	id     int
	states []crashState
	paths  []string // every path it had, in order
	gone   bool     // unlinked, or renamed over

	synced     int // index of the durable state, -1 if none
	syncedPath int // index into paths at that time
	syncHash   string
	goneAfter  bool // unlinked or replaced after it was synced
}

type crashModel struct {
	run    int
	objs   map[int]*crashModelObj
	byPath map[string]*crashModelObj
	closed bool
	syncs  int
	errLog string // an "error" line: the workload failed
}

func (o *crashModelObj) cur() crashState { return o.states[len(o.states)-1] }

func (o *crashModelObj) push(s crashState) { o.states = append(o.states, s) }

// markSynced records the current state as durable.
func (o *crashModelObj) markSynced() {
	o.synced = len(o.states) - 1
	o.syncedPath = len(o.paths) - 1
	o.goneAfter = false
}

func (m *crashModel) setGone(o *crashModelObj) {
	o.gone = true
	if o.synced >= 0 {
		o.goneAfter = true
	}
	if m.byPath[o.paths[len(o.paths)-1]] == o {
		delete(m.byPath, o.paths[len(o.paths)-1])
	}
}

// parseCrashLog builds the model from the log of the last run.
func parseCrashLog(path string) (*crashModel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	// A kill can cut the last line short: write(2) to a file checks for
	// a fatal signal between pages, so a line that crosses a page
	// boundary may be half written. A change is logged before it starts,
	// so a torn change never ran; a torn sync, syncfs or closed line
	// only drops a promise, which asks less of the image.
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		data = data[:i+1]
	}
	var m *crashModel
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		fl := strings.Fields(sc.Text())
		if len(fl) == 0 {
			continue
		}
		if fl[0] == "run" {
			n, _ := strconv.Atoi(fl[1])
			m = &crashModel{run: n, objs: map[int]*crashModelObj{},
				byPath: map[string]*crashModelObj{}}
			continue
		}
		if m == nil {
			return nil, fmt.Errorf("log line %d before run: %q", ln, sc.Text())
		}
		if err := m.apply(fl); err != nil {
			return nil, fmt.Errorf("log line %d %q: %w", ln, sc.Text(), err)
		}
	}
	if m == nil {
		return nil, errors.New("log has no run line")
	}
	return m, sc.Err()
}

func crashInts(fl []string) []int64 {
	var v []int64
	for _, s := range fl {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			u, _ := strconv.ParseUint(s, 10, 64)
			n = int64(u)
		}
		v = append(v, n)
	}
	return v
}

func (m *crashModel) apply(fl []string) error {
	switch fl[0] {
	case "error":
		m.errLog = strings.Join(fl[1:], " ")
		return nil
	case "syncfs-start":
		return nil
	case "syncfs", "closed":
		for _, o := range m.byPath {
			o.markSynced()
		}
		m.closed = fl[0] == "closed"
		return nil
	}
	if len(fl) < 2 {
		return errors.New("short line")
	}
	id, err := strconv.Atoi(fl[1])
	if err != nil {
		return err
	}
	if fl[0] == "create" {
		o := &crashModelObj{id: id, paths: []string{fl[2]}, synced: -1,
			states: []crashState{{}}}
		m.objs[id], m.byPath[fl[2]] = o, o
		return nil
	}
	o := m.objs[id]
	if o == nil {
		return fmt.Errorf("unknown object %d", id)
	}
	cur := o.cur()
	switch fl[0] {
	case "write":
		v := crashInts(fl[2:5])
		c := crashApplyWrite(slices.Clone(cur.content), crashData(uint64(v[2]), int(v[1])), v[0])
		o.push(crashState{c, cur.xattr})
	case "trunc":
		v := crashInts(fl[2:3])
		o.push(crashState{crashApplyTrunc(slices.Clone(cur.content), v[0]), cur.xattr})
	case "xattr":
		v := crashInts(fl[2:4])
		o.push(crashState{cur.content, crashData(uint64(v[0]), int(v[1]))})
	case "rename":
		if victim := m.byPath[fl[2]]; victim != nil && victim != o {
			m.setGone(victim)
		}
		delete(m.byPath, o.paths[len(o.paths)-1])
		o.paths = append(o.paths, fl[2])
		m.byPath[fl[2]] = o
	case "unlink":
		m.setGone(o)
	case "sync":
		if h := crashHash(cur.content); h != fl[3] {
			return fmt.Errorf("model hash %s differs from logged hash %s", h, fl[3])
		}
		o.markSynced()
		o.syncHash = fl[3]
		m.syncs++
	default:
		return fmt.Errorf("unknown event %q", fl[0])
	}
	return nil
}

// crashFile is a file found in the image.
type crashFile struct {
	content []byte
	xattr   []byte
}

// readCrashFile reads path (relative to the root) from fs; nil, nil if
// it does not exist.
func readCrashFile(fs *FS, path string) (*crashFile, error) {
	ino := uint32(RootIno)
	for _, name := range strings.Split(path, "/") {
		a, err := fs.Lookup(ino, name)
		if errors.Is(err, syscall.ENOENT) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lookup %s: %w", path, err)
		}
		ino = a.Ino
	}
	a, err := fs.Getattr(ino)
	if err != nil {
		return nil, fmt.Errorf("getattr %s: %w", path, err)
	}
	if a.Mode&sIFMT != sIFREG {
		return nil, fmt.Errorf("%s: mode %#o is not a regular file", path, a.Mode)
	}
	c := make([]byte, a.Size)
	if n, err := fs.ReadAt(ino, c, 0); err != nil && !(errors.Is(err, io.EOF) && n == len(c)) {
		return nil, fmt.Errorf("read %s (%d bytes): %w", path, a.Size, err)
	}
	x, err := fs.Getxattr(ino, "user.crash")
	if errors.Is(err, syscall.ENODATA) {
		x, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getxattr %s: %w", path, err)
	}
	return &crashFile{c, x}, nil
}

// matches reports whether f is made of states of o from index from on,
// and if not, why.
func (o *crashModelObj) matches(f *crashFile, from int) (bool, string) {
	states := o.states[from:]
	lenOK, xattrOK := false, false
	for _, s := range states {
		lenOK = lenOK || len(s.content) == len(f.content)
		xattrOK = xattrOK || bytes.Equal(s.xattr, f.xattr)
	}
	if !lenOK {
		var lens []int
		for _, s := range states {
			lens = append(lens, len(s.content))
		}
		return false, fmt.Sprintf("size %d, allowed sizes %v", len(f.content), lens)
	}
	if !xattrOK {
		return false, fmt.Sprintf("user.crash xattr %s matches no allowed state",
			crashHash(f.xattr))
	}
	for i, b := range f.content {
		ok := false
		for _, s := range states {
			if i < len(s.content) && s.content[i] == b {
				ok = true
				break
			}
		}
		if !ok {
			end := min(i+16, len(f.content))
			return false, fmt.Sprintf("byte %d (%x...) is in no allowed state; %d states "+
				"from %d, synced state hash %s", i, f.content[i:end], len(states), from,
				crashHash(states[0].content))
		}
	}
	return true, ""
}

// check compares the image with the model and returns one line per
// problem: lost synced files and bytes from nowhere.
func (m *crashModel) check(fs *FS) ([]string, error) {
	var probs []string
	files := map[string]*crashFile{}
	get := func(p string) (*crashFile, error) {
		if f, ok := files[p]; ok {
			return f, nil
		}
		f, err := readCrashFile(fs, p)
		files[p] = f
		return f, err
	}
	ids := make([]int, 0, len(m.objs))
	for id := range m.objs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		o := m.objs[id]
		if o.synced < 0 {
			continue
		}
		found, why := false, []string{}
		for _, p := range o.paths[o.syncedPath:] {
			f, err := get(p)
			if err != nil {
				return nil, err
			}
			if f == nil {
				why = append(why, p+": missing")
				continue
			}
			ok, reason := o.matches(f, o.synced)
			if ok {
				found = true
				break
			}
			why = append(why, p+": "+reason)
		}
		if !found && !o.goneAfter {
			probs = append(probs, fmt.Sprintf("lost synced file: obj %d synced at %s "+
				"(hash %s, %d bytes, state %d of %d): %s", o.id, o.paths[o.syncedPath],
				crashHash(o.states[o.synced].content), len(o.states[o.synced].content),
				o.synced, len(o.states), strings.Join(why, "; ")))
		}
	}
	// Every file in the tree must be one the log made at that path.
	return probs, m.walk(fs, fmt.Sprintf("r%d", m.run), &probs)
}

func (m *crashModel) walk(fs *FS, path string, probs *[]string) error {
	ino := uint32(RootIno)
	for _, name := range strings.Split(path, "/") {
		a, err := fs.Lookup(ino, name)
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lookup %s: %w", path, err)
		}
		ino = a.Ino
	}
	ents, err := fs.ReadDir(ino)
	if err != nil {
		return fmt.Errorf("readdir %s: %w", path, err)
	}
	for _, e := range ents {
		p := path + "/" + e.Name
		if e.Type == sIFDIR {
			if err := m.walk(fs, p, probs); err != nil {
				return err
			}
			continue
		}
		f, err := readCrashFile(fs, p)
		if err != nil {
			return err
		}
		var why []string
		ok := false
		for _, o := range m.objs {
			if !slices.Contains(o.paths, p) {
				continue
			}
			var reason string
			if ok, reason = o.matches(f, 0); ok {
				break
			}
			why = append(why, fmt.Sprintf("obj %d: %s", o.id, reason))
		}
		if !ok {
			*probs = append(*probs, fmt.Sprintf("file from nowhere: %s (%d bytes, hash %s) "+
				"matches no file the log made there: %s", p, len(f.content),
				crashHash(f.content), strings.Join(why, "; ")))
		}
	}
	return nil
}

// A kill inside the log's write of a line that crosses a page boundary
// leaves that line torn (CI saw "rename 3" without its path).
func TestParseCrashLogTorn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.log")
	log := "run 1\ncreate 3 r1/a\nwrite 3 0 10 7\nrename 3"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := parseCrashLog(path)
	if err != nil {
		t.Fatal(err)
	}
	o := m.objs[3]
	if o == nil || len(o.paths) != 1 || len(o.states) != 2 {
		t.Fatalf("model after a torn rename: %+v", o)
	}
}
