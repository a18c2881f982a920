package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// InstanceStatsCmd is `husk instance stats [--json] [--no-stream] NAME`.
//
// Apptainer reads the instance's cgroup and refuses without one. husk
// needs no cgroup: it adds up /proc of the instance's processes (stage 1,
// which serves the union, the container's init and every descendant,
// joined commands included), so memory is the sum of their resident sets
// (shared pages counted once per process) and the limit is the machine's
// RAM.
type InstanceStatsCmd struct {
	JSON     bool   `short:"j" help:"Print one sample as JSON (implies --no-stream)."`
	NoStream bool   `help:"Print one sample instead of one every second."`
	Name     string `arg:"" help:"Instance name."`
}

// Help implements kong.HelpProvider.
func (InstanceStatsCmd) Help() string {
	return `Shows the CPU, memory, block I/O and process count of an instance's
processes, measured over one second, from /proc (no cgroups needed).

Example:
  husk instance stats --no-stream web`
}

// procSample is what /proc says about a set of processes at one time.
type procSample struct {
	at              time.Time
	cpuNs           uint64 // user+system time
	rss             uint64 // bytes
	readB, writeB   uint64 // storage I/O
	pids            int
	memLimit        uint64
	ioUnknown, gone bool
}

// Run implements `husk instance stats`.
func (c *InstanceStatsCmd) Run(g *globals) error {
	list, err := instances(c.Name)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("no instance found with name %s", c.Name)
	}
	if len(list) != 1 {
		return fmt.Errorf("query returned more than one instance (%d)", len(list))
	}
	r := list[0].rec
	if c.JSON {
		c.NoStream = true
	} else {
		g.info(fmt.Sprintf("Stats for %s instance of %s (PID=%d)", r.Name, r.Image, r.Pid))
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)

	// The instance is stage 1 (the FUSE server, parent of the container's
	// init) and everything below it, joined commands included.
	root := parentOf(r.Pid)
	if root <= 1 || root == r.PPid {
		root = r.Pid
	}
	prev := sampleProcs(root)
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(time.Second):
		}
		cur := sampleProcs(root)
		if cur.gone {
			return fmt.Errorf("instance %s (PID=%d) is gone", r.Name, r.Pid)
		}
		if c.JSON {
			return printStatsJSON(os.Stdout, cur)
		}
		if !c.NoStream && isTerminal(os.Stdout) {
			fmt.Print("\033[H\033[2J")
		}
		printStatsTable(os.Stdout, r.Name, prev, cur)
		if c.NoStream {
			return nil
		}
		prev = cur
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// printStatsTable prints Apptainer's columns for one interval.
func printStatsTable(w io.Writer, name string, prev, cur procSample) {
	cpu := 0.0
	if dt := cur.at.Sub(prev.at); dt > 0 && cur.cpuNs >= prev.cpuNs {
		cpu = float64(cur.cpuNs-prev.cpuNs) / float64(dt.Nanoseconds()) * 100
	}
	mem := 0.0
	if cur.memLimit > 0 {
		mem = float64(cur.rss) / float64(cur.memLimit) * 100
	}
	tw := tabwriter.NewWriter(w, 0, 8, 4, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE NAME\tCPU USAGE\tMEM USAGE / LIMIT\tMEM %\tBLOCK I/O\tPIDS")
	fmt.Fprintf(tw, "%s\t%.2f%%\t%s / %s\t%.2f%%\t%s / %s\t%d\n", name, cpu,
		bytesSize(cur.rss), bytesSize(cur.memLimit), mem, bytesSize(cur.readB),
		bytesSize(cur.writeB), cur.pids)
	tw.Flush()
}

// printStatsJSON prints the sample with the keys of the cgroup statistics
// Apptainer prints (opencontainers/cgroups Stats), where husk has them.
func printStatsJSON(w io.Writer, s procSample) error {
	type entry struct {
		Op    string `json:"op"`
		Value uint64 `json:"value"`
	}
	out := map[string]any{
		"cpu_stats": map[string]any{"cpu_usage": map[string]any{"total_usage": s.cpuNs}},
		"memory_stats": map[string]any{"usage": map[string]any{"usage": s.rss,
			"limit": s.memLimit}},
		"pids_stats": map[string]any{"current": s.pids},
		"blkio_stats": map[string]any{"io_service_bytes_recursive": []entry{
			{"read", s.readB}, {"write", s.writeB}}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "\t")
	return enc.Encode(out)
}

// bytesSize formats like docker/go-units BytesSize: 1.5MiB.
func bytesSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(f, 'g', 4, 64) + units[i]
}

// sampleProcs adds up pid and its descendants.
func sampleProcs(pid int) procSample {
	s := procSample{at: time.Now()}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		s.memLimit = uint64(si.Totalram) * uint64(si.Unit)
	}
	pids := descendantsOf(pid)
	if len(pids) == 0 {
		s.gone = true
		return s
	}
	page := uint64(os.Getpagesize())
	for _, p := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(p))
		if st, err := os.ReadFile(dir + "/stat"); err == nil {
			f := statFields(st)
			// utime and stime are fields 14 and 15 of stat(5), in clock
			// ticks (USER_HZ, 100 on Linux).
			if len(f) > 12 {
				ut, _ := strconv.ParseUint(f[11], 10, 64)
				st, _ := strconv.ParseUint(f[12], 10, 64)
				s.cpuNs += (ut + st) * uint64(time.Second/100)
			}
		} else {
			continue
		}
		s.pids++
		if sm, err := os.ReadFile(dir + "/statm"); err == nil {
			if f := strings.Fields(string(sm)); len(f) > 1 {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				s.rss += n * page
			}
		}
		if rd, wr, ok := procIO(dir + "/io"); ok {
			s.readB += rd
			s.writeB += wr
		}
	}
	return s
}

// statFields returns the fields of a /proc/<pid>/stat line after the
// command name, which may hold spaces and parentheses: state is [0].
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func procIO(path string) (read, write uint64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "read_bytes":
			read = n
		case "write_bytes":
			write = n
		}
	}
	return read, write, true
}

// parentOf returns the parent pid of pid, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := statFields(b)
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// descendantsOf lists pid and every live descendant, from the ppid
// fields of /proc/*/stat.
func descendantsOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	alive := map[int]bool{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(b)
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
		alive[p] = f[0] != "Z"
	}
	if !alive[pid] {
		return nil
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i]] {
			if alive[c] {
				out = append(out, c)
			}
		}
	}
	return out
}
