package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// sampleEvery is the RSS sampling period. VmHWM is the peak so far, so a
// sample loses only the growth in the last period before a process exits.
// bench.sh samples in a separate, untimed run: scanning /proc costs CPU.
const sampleEvery = 5 * time.Millisecond

// rssSampler tracks the VmHWM of every descendant of root whose executable
// is one of exes, and the largest sum of their PSS seen in one sample.
//
// The sum of per-process VmHWM overstates what the processes use
// together: it counts pages they share (the executable's text, mapped by
// every husk process from the same file) once per process, and adds
// peaks reached at different times. PSS divides each shared page among
// the processes that map it, so the sum of PSS over the processes at one
// instant is their real joint footprint (it still counts their private
// and their share of file pages, as RSS does).
type rssSampler struct {
	root    int
	exes    map[string]bool
	peak    map[int]int64
	pssPeak int64 // KiB
	done    chan struct{}
	ended   chan struct{}
}

func startSampler(root int, exes map[string]bool) *rssSampler {
	s := &rssSampler{root: root, exes: exes, peak: map[int]int64{},
		done: make(chan struct{}), ended: make(chan struct{})}
	go s.loop()
	return s
}

// stop ends sampling and returns the sum of the per-process peaks
// (VmHWM) and the peak of the summed PSS, in KiB.
func (s *rssSampler) stop() (hwm, pss int64) {
	close(s.done)
	<-s.ended
	for _, v := range s.peak {
		hwm += v
	}
	return hwm, s.pssPeak
}

func (s *rssSampler) loop() {
	defer close(s.ended)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	match := map[int]bool{} // pid -> executable is one of exes
	for {
		s.sample(match)
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

func (s *rssSampler) sample(match map[int]bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(pid); pp > 0 {
			children[pp] = append(children[pp], pid)
		}
	}
	queue := []int{s.root}
	var pss int64
	for len(queue) > 0 {
		pid := queue[0]
		queue = append(queue[1:], children[pid]...)
		ok, seen := match[pid]
		if !seen {
			exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
			if err != nil {
				continue // not started yet, or gone
			}
			ok = s.exes[strings.TrimSuffix(exe, " (deleted)")]
			match[pid] = ok
		}
		if ok {
			if kib := vmHWM(pid); kib > s.peak[pid] {
				s.peak[pid] = kib
			}
			pss += pssKiB(pid)
		}
	}
	s.pssPeak = max(s.pssPeak, pss)
}

// pssKiB returns the process's proportional set size in KiB.
func pssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// ppid reads the parent pid from /proc/PID/stat (the field after the
// parenthesised command name, which may itself contain spaces).
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// vmHWM returns the process's peak resident set size in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
