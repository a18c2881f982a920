// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
)

// SeccompProfile is a seccomp profile in the OCI runtime-spec / Docker
// JSON format (`--security seccomp:FILE`), applied to the payload. Read
// one with [ReadSeccompProfile]; it travels to stage 2 inside the Spec.
//
// Supported: defaultAction with defaultErrnoRet; syscalls entries with
// names (or Docker's older single name), action, errnoRet and args
// (SCMP_CMP_EQ, NE, LT, LE, GT, GE, and MASKED_EQ where the masked value
// is 0 or the whole single-bit mask); Docker's includes/excludes by caps,
// arches and minKernel; the flags SECCOMP_FILTER_FLAG_LOG and
// SECCOMP_FILTER_FLAG_SPEC_ALLOW (TSYNC is accepted, not needed: the
// loader's other threads end at its exec of the payload). Not supported:
// SCMP_ACT_NOTIFY and listenerPath (no agent to send them to). Rules
// apply to the native architecture; see seccompprofile_linux.go for the
// others.
type SeccompProfile struct {
	DefaultAction   string        `json:"defaultAction"`
	DefaultErrnoRet *uint         `json:"defaultErrnoRet,omitempty"`
	Architectures   []string      `json:"architectures,omitempty"`
	Flags           []string      `json:"flags,omitempty"`
	ListenerPath    string        `json:"listenerPath,omitempty"`
	Syscalls        []SeccompRule `json:"syscalls,omitempty"`
	// File is where the profile was read from, for messages.
	File string `json:"husk_file,omitempty"`
}

// SeccompRule is one entry of a profile's syscalls list.
type SeccompRule struct {
	Names    []string       `json:"names,omitempty"`
	Name     string         `json:"name,omitempty"`
	Action   string         `json:"action"`
	ErrnoRet *uint          `json:"errnoRet,omitempty"`
	Args     []SeccompArg   `json:"args,omitempty"`
	Includes *SeccompFilter `json:"includes,omitempty"`
	Excludes *SeccompFilter `json:"excludes,omitempty"`
}

// SeccompArg is a condition on one syscall argument.
type SeccompArg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// SeccompFilter is Docker's includes/excludes condition of a rule.
type SeccompFilter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// ReadSeccompProfile reads and checks a profile file. Errors name the file
// and, for JSON syntax, the line.
func ReadSeccompProfile(path string) (*SeccompProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	p := &SeccompProfile{}
	if err := json.Unmarshal(b, p); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("seccomp profile %s: line %d: %v", path,
				1+bytes.Count(b[:se.Offset], []byte("\n")), se)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "the profile"
			}
			return nil, fmt.Errorf("seccomp profile %s: line %d: %s must be %s, not %s",
				path, 1+bytes.Count(b[:te.Offset], []byte("\n")), field,
				jsonKind(te.Type), article(te.Value))
		}
		return nil, fmt.Errorf("seccomp profile %s: %v", path, err)
	}
	p.File = path
	if err := p.Check(); err != nil {
		return nil, err
	}
	return p, nil
}

// jsonKind names the JSON value a Go type is read from, for messages
// (not Go's type names).
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another kind of value"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.Kind().String()
}

// article puts "a" or "an" before a JSON kind ("array", "number").
func article(kind string) string {
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// Check reports the first thing in p that husk cannot apply, naming the
// file and the rule.
func (p *SeccompProfile) Check() error {
	if err := p.check(); err != nil {
		return fmt.Errorf("seccomp profile %s: %w", p.File, err)
	}
	// Compiling finds unknown argument indexes and conditions the
	// assembler refuses; which rules apply does not matter here.
	if _, err := p.compile(0, true); err != nil {
		return fmt.Errorf("seccomp profile %s: %w", p.File, err)
	}
	return nil
}

func (p *SeccompProfile) check() error {
	if p.DefaultAction == "" {
		return errors.New("no defaultAction")
	}
	if err := checkAction(p.DefaultAction); err != nil {
		return fmt.Errorf("defaultAction: %w", err)
	}
	if p.ListenerPath != "" {
		return errors.New("listenerPath: husk has no seccomp agent to notify")
	}
	for _, f := range p.Flags {
		switch f {
		case "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
			"SECCOMP_FILTER_FLAG_TSYNC":
		default:
			return fmt.Errorf("flags: unknown flag %q", f)
		}
	}
	for i, r := range p.Syscalls {
		if err := r.check(); err != nil {
			return fmt.Errorf("syscalls[%d] (%s): %w", i, r.label(), err)
		}
	}
	return nil
}

func (r *SeccompRule) check() error {
	if len(r.Names) == 0 && r.Name == "" {
		return errors.New("no names")
	}
	if err := checkAction(r.Action); err != nil {
		return err
	}
	for _, a := range r.Args {
		if a.Index > 5 {
			return fmt.Errorf("argument index %d: a syscall has 6 arguments (0-5)", a.Index)
		}
		if _, ok := argOps[a.Op]; !ok {
			return fmt.Errorf("unknown op %q (%s)", a.Op,
				strings.Join(slices.Sorted(maps.Keys(argOps)), ", "))
		}
		if a.Op == "SCMP_CMP_MASKED_EQ" && a.ValueTwo != 0 &&
			(a.ValueTwo != a.Value || a.Value&(a.Value-1) != 0) {
			// TODO: the BPF assembler has no masked compare against an
			// arbitrary value; Docker's profiles only use value 0.
			return fmt.Errorf("SCMP_CMP_MASKED_EQ of mask %#x with %#x: only 0 or a "+
				"single-bit mask's own value can be compared", a.Value, a.ValueTwo)
		}
	}
	for _, f := range []*SeccompFilter{r.Includes, r.Excludes} {
		if f == nil {
			continue
		}
		for _, c := range f.Caps {
			if !slices.Contains(capNames, c) {
				return fmt.Errorf("unknown capability %q", c)
			}
		}
		if f.MinKernel != "" {
			if _, err := parseKernelVersion(f.MinKernel); err != nil {
				return err
			}
		}
	}
	return nil
}

// label names a rule in messages: its first syscall names.
func (r *SeccompRule) label() string {
	names := r.names()
	if len(names) > 3 {
		return strings.Join(names[:3], ",") + ",..."
	}
	return strings.Join(names, ",")
}

// names are the rule's syscall names, Docker's old single name included.
func (r *SeccompRule) names() []string {
	if r.Name == "" {
		return r.Names
	}
	return append([]string{r.Name}, r.Names...)
}

func checkAction(a string) error {
	if a == "SCMP_ACT_NOTIFY" {
		return errors.New("SCMP_ACT_NOTIFY: husk has no seccomp agent to notify")
	}
	if _, ok := profileActions[a]; !ok {
		return fmt.Errorf("unknown action %q (%s)", a,
			strings.Join(slices.Sorted(maps.Keys(profileActions)), ", "))
	}
	return nil
}

// parseKernelVersion reads "MAJOR.MINOR" (and ignores what follows a
// further dot or dash, as in uname's release "6.1.0-18-amd64").
func parseKernelVersion(s string) ([2]int, error) {
	var v [2]int
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' })
	if len(fields) < 2 {
		return v, fmt.Errorf("kernel version %q: want MAJOR.MINOR", s)
	}
	for i := range v {
		if _, err := fmt.Sscanf(fields[i], "%d", &v[i]); err != nil {
			return v, fmt.Errorf("kernel version %q: want MAJOR.MINOR", s)
		}
	}
	return v, nil
}
