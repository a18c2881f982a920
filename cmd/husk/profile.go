package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
)

// Profiling: --cpuprofile FILE and --memprofile FILE (HUSK_CPUPROFILE,
// HUSK_MEMPROFILE) write pprof profiles of the husk process the user
// started to FILE, and of each container stage to FILE.stage1 (the FUSE
// server and supervisor, where the union's work is done) and FILE.stage2
// (the payload's reaper). The stages learn the files from the
// environment, which they inherit from husk; the container does not see
// HUSK_ variables.

// Environment variables naming the profiles; the flags set them too so
// that the stages see them.
const (
	cpuProfileEnv = "HUSK_CPUPROFILE"
	memProfileEnv = "HUSK_MEMPROFILE"
)

// profiles is a running set of profiles of one process.
type profiles struct {
	cpu *os.File // nil: no CPU profile
	mem *os.File // nil: no heap profile
}

// startProfiles starts the profiles of this process (stage 0) and exports
// the absolute file names for the stages. stop writes them out.
func startProfiles(cpu, mem string) (stop func() error, err error) {
	for _, v := range []struct {
		path *string
		env  string
	}{{&cpu, cpuProfileEnv}, {&mem, memProfileEnv}} {
		if *v.path == "" {
			continue
		}
		abs, err := filepath.Abs(*v.path)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", *v.path, err)
		}
		*v.path = abs
		if err := os.Setenv(v.env, abs); err != nil {
			return nil, err
		}
	}
	p, err := openProfiles(cpu, mem)
	if err != nil {
		return nil, err
	}
	return p.stop, nil
}

// profileStage is the sandbox.StageHook that profiles stage n to
// FILE.stageN when the environment asks for it. Errors go to stderr: a
// stage has no other channel before it has read its plan, and profiling
// must not fail the container.
func profileStage(n int) func() {
	cpu, mem := os.Getenv(cpuProfileEnv), os.Getenv(memProfileEnv)
	if cpu == "" && mem == "" {
		return nil
	}
	suffix := ".stage" + strconv.Itoa(n)
	if cpu != "" {
		cpu += suffix
	}
	if mem != "" {
		mem += suffix
	}
	p, err := openProfiles(cpu, mem)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%-8s %v\n", "WARNING:", err)
		return nil
	}
	return func() {
		if err := p.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%-8s %v\n", "WARNING:", err)
		}
	}
}

// openProfiles creates the profile files ("" for none) and starts CPU
// profiling. Both files are opened now: a stage may pivot away from the
// host's file system before it writes them.
func openProfiles(cpu, mem string) (*profiles, error) {
	p := &profiles{}
	var err error
	if mem != "" {
		if p.mem, err = os.Create(mem); err != nil {
			return nil, fmt.Errorf("memory profile: %w", err)
		}
	}
	if cpu != "" {
		if p.cpu, err = os.Create(cpu); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(p.cpu); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("CPU profile %s: %w", cpu, err)
		}
	}
	return p, nil
}

// stop ends CPU profiling and writes the heap profile.
func (p *profiles) stop() error {
	var errs []error
	if p.cpu != nil {
		pprof.StopCPUProfile()
		if err := p.cpu.Close(); err != nil {
			errs = append(errs, fmt.Errorf("CPU profile: %w", err))
		}
	}
	if p.mem != nil {
		runtime.GC() // the heap profile shows the state as of the last GC
		if err := pprof.WriteHeapProfile(p.mem); err != nil {
			errs = append(errs, fmt.Errorf("memory profile %s: %w", p.mem.Name(), err))
		}
		if err := p.mem.Close(); err != nil {
			errs = append(errs, fmt.Errorf("memory profile: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (p *profiles) closeAll() {
	for _, f := range []*os.File{p.cpu, p.mem} {
		if f != nil {
			f.Close()
		}
	}
}
