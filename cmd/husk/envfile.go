package main

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"strings"
)

// envFileIgnored are the names an --env-file cannot set (COMPAT §7.5).
var envFileIgnored = map[string]bool{"HOME": true, "PWD": true, "UID": true, "GID": true,
	"EUID": true, "IFS": true, "OPTIND": true}

// parseEnvFile evaluates an --env-file on the host and returns the
// variables it assigns, in order (a later assignment replaces an earlier
// one).
//
// Apptainer runs the file through its embedded shell with commands and
// file access disabled. husk parses the part of the shell language such
// files use: `KEY=VALUE` and `export KEY=VALUE` words, several per line
// (`export KEY` assigns nothing), '...' and "..." quoting, backslash
// escapes, comments, and $VAR, ${VAR},
// ${VAR:-word} and ${VAR-word} expansion from the variables assigned so
// far, then the host environment, then APPTAINER_IMAGE, and the tilde
// expansion of assignments (~ and ~user at the start of a value or after
// a colon, as in PATH=~/bin:~/.local/bin). Command
// substitution and other shell syntax are refused with an error instead
// of being ignored.
func parseEnvFile(path string, host map[string]string, image string) ([]envVar, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		// No environment value can hold one: exec would fail later with
		// a bare EINVAL.
		line := 1 + bytes.Count(b[:i], []byte{'\n'})
		return nil, fmt.Errorf("--env-file %s: line %d: a NUL byte (is it a text file?)",
			path, line)
	}
	p := &envParser{src: string(b), vars: map[string]string{}, host: host, image: image}
	out, err := p.parse()
	if err != nil {
		return nil, fmt.Errorf("--env-file %s: line %d: %w", path, p.line, err)
	}
	return out, nil
}

type envParser struct {
	src   string
	pos   int
	line  int
	vars  map[string]string
	host  map[string]string
	image string
}

func (p *envParser) parse() ([]envVar, error) {
	p.line = 1
	var out []envVar
	index := map[string]int{}
	for {
		// lineWords consumes the newline: an error about the words is
		// reported at the line they started on.
		start := p.line
		words, err := p.lineWords()
		if err != nil {
			// An unterminated quote runs to the end of the file.
			p.line = start
			return nil, err
		}
		if words == nil {
			return out, nil
		}
		export := len(words) > 0 && words[0] == "export"
		if export {
			words = words[1:]
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if export && !ok && validName(k) {
				continue // `export NAME`: marks it, assigns nothing
			}
			if !ok || !validName(k) {
				p.line = start
				return nil, fmt.Errorf("%q is not an assignment (commands are not run)", w)
			}
			p.vars[k] = v
			if envFileIgnored[k] {
				continue
			}
			if i, seen := index[k]; seen {
				out[i].Value = v
				continue
			}
			index[k] = len(out)
			out = append(out, envVar{Key: k, Value: v})
		}
	}
}

// lineWords reads the expanded words of one logical line; nil at the end
// of the input.
func (p *envParser) lineWords() ([]string, error) {
	if p.pos >= len(p.src) {
		return nil, nil
	}
	words := []string{}
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n':
			p.pos++
			p.line++
			return words, nil
		case c == ' ' || c == '\t' || c == '\r' || c == ';':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			w, err := p.word()
			if err != nil {
				return nil, err
			}
			words = append(words, w)
		}
	}
	return words, nil
}

// word reads one word up to unquoted white space, expanding as it goes.
func (p *envParser) word() (string, error) {
	var b strings.Builder
	// value: past the '=' of NAME=; tilde: an unquoted ~ here expands.
	value, tilde := false, false
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		atTilde := tilde
		tilde = false
		switch c {
		case ' ', '\t', '\n', '\r', ';':
			return b.String(), nil
		case '\'':
			end := strings.IndexByte(p.src[p.pos+1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("unterminated single quote")
			}
			s := p.src[p.pos+1 : p.pos+1+end]
			p.line += strings.Count(s, "\n")
			b.WriteString(s)
			p.pos += end + 2
		case '"':
			p.pos++
			if err := p.doubleQuoted(&b); err != nil {
				return "", err
			}
		case '\\':
			p.pos++
			if p.pos < len(p.src) {
				if p.src[p.pos] == '\n' {
					p.line++
				} else {
					b.WriteByte(p.src[p.pos])
				}
				p.pos++
			}
		case '$':
			if err := p.expand(&b); err != nil {
				return "", err
			}
		case '`', '|', '&', '<', '>', '(', ')':
			return "", fmt.Errorf("unsupported shell syntax %q (commands are not run)", c)
		case '~':
			if atTilde && p.tilde(&b) {
				continue
			}
			b.WriteByte(c)
			p.pos++
		default:
			b.WriteByte(c)
			p.pos++
			if c == '=' && !value && validName(b.String()[:b.Len()-1]) {
				value, tilde = true, true
			} else if c == ':' && value {
				tilde = true
			}
		}
	}
	return b.String(), nil
}

// tilde expands the ~ or ~user at p.pos, ended by '/', ':' or the end of
// the word, to the home directory: $HOME's value for ~, the password
// database's for ~user. It reports false, consuming nothing, where the
// shell would keep the text as it is (an unknown user, quotes in the
// name, HOME unset).
func (p *envParser) tilde(b *strings.Builder) bool {
	end := p.pos + 1
	for end < len(p.src) && strings.IndexByte("/: \t\r\n;", p.src[end]) < 0 {
		end++
	}
	name := p.src[p.pos+1 : end]
	var home string
	if name == "" {
		v, set := p.lookup("HOME")
		if !set {
			return false
		}
		home = v
	} else {
		if strings.ContainsAny(name, "'\"\\$`") {
			return false
		}
		u, err := user.Lookup(name)
		if err != nil {
			return false
		}
		home = u.HomeDir
	}
	b.WriteString(home)
	p.pos = end
	return true
}

func (p *envParser) doubleQuoted(b *strings.Builder) error {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case '"':
			p.pos++
			return nil
		case '\\':
			if p.pos+1 < len(p.src) && strings.IndexByte("$`\"\\\n", p.src[p.pos+1]) >= 0 {
				if p.src[p.pos+1] != '\n' {
					b.WriteByte(p.src[p.pos+1])
				} else {
					p.line++
				}
				p.pos += 2
				continue
			}
			b.WriteByte(c)
			p.pos++
		case '$':
			if err := p.expand(b); err != nil {
				return err
			}
		case '`':
			return fmt.Errorf("command substitution is not supported")
		default:
			if c == '\n' {
				p.line++
			}
			b.WriteByte(c)
			p.pos++
		}
	}
	return fmt.Errorf("unterminated double quote")
}

// expand handles a '$' at p.pos.
func (p *envParser) expand(b *strings.Builder) error {
	p.pos++
	if p.pos >= len(p.src) {
		b.WriteByte('$')
		return nil
	}
	switch c := p.src[p.pos]; {
	case strings.HasPrefix(p.src[p.pos:], "(("):
		return fmt.Errorf("arithmetic expansion is not supported")
	case c == '(':
		return fmt.Errorf("command substitution is not supported")
	case c == '{':
		end := strings.IndexByte(p.src[p.pos:], '}')
		if end < 0 {
			return fmt.Errorf("unterminated ${")
		}
		expr := p.src[p.pos+1 : p.pos+end]
		p.pos += end + 1
		name, def, op := expr, "", ""
		for _, o := range []string{":-", "-"} {
			if i := strings.Index(expr, o); i > 0 {
				name, def, op = expr[:i], expr[i+len(o):], o
				break
			}
		}
		if !validName(name) {
			return fmt.Errorf("unsupported expansion ${%s}", expr)
		}
		v, set := p.lookup(name)
		if (op == ":-" && v == "") || (op == "-" && !set) {
			v = def
		}
		b.WriteString(v)
	case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		start := p.pos
		for p.pos < len(p.src) && validName(p.src[start:p.pos+1]) {
			p.pos++
		}
		v, _ := p.lookup(p.src[start:p.pos])
		b.WriteString(v)
	default:
		b.WriteByte('$')
	}
	return nil
}

func (p *envParser) lookup(name string) (string, bool) {
	if v, ok := p.vars[name]; ok {
		return v, true
	}
	if v, ok := p.host[name]; ok {
		return v, true
	}
	if name == "APPTAINER_IMAGE" || name == "SINGULARITY_IMAGE" {
		return p.image, true
	}
	return "", false
}
