package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/husk-project/husk/sandbox"
)

// SecurityFlags are Apptainer's capability, security and network flags.
// husk does what a user namespace allows (capabilities of the payload, a
// network namespace with loopback only) and says so for the rest.
type SecurityFlags struct {
	AddCaps   string   `placeholder:"CAPS" help:"${addcaps}" env:"HUSK_ADD_CAPS,APPTAINER_ADD_CAPS"`
	DropCaps  string   `placeholder:"CAPS" help:"${dropcaps}" env:"HUSK_DROP_CAPS,APPTAINER_DROP_CAPS"`
	KeepPrivs bool     `help:"${keepprivs}" env:"HUSK_KEEP_PRIVS,APPTAINER_KEEP_PRIVS"`
	NoPrivs   bool     `help:"${noprivs}" env:"HUSK_NO_PRIVS,APPTAINER_NO_PRIVS"`
	Security  []string `placeholder:"TYPE:VALUE" help:"${security}" env:"HUSK_SECURITY,APPTAINER_SECURITY"`

	Net         bool     `short:"n" help:"${net}" env:"HUSK_NET,APPTAINER_NET"`
	Network     string   `placeholder:"NAME" help:"${network}" env:"HUSK_NETWORK,APPTAINER_NETWORK"`
	NetworkArgs []string `placeholder:"ARGS" help:"${netargs}" env:"HUSK_NETWORK_ARGS,APPTAINER_NETWORK_ARGS"`
}

func init() {
	for k, v := range map[string]string{
		"addcaps": "Capabilities for the payload, e.g. CAP_NET_RAW,CAP_CHOWN (held in " +
			"the container's user namespace).",
		"dropcaps": "Capabilities to remove, e.g. with --fakeroot: CAP_CHOWN.",
		"keepprivs": "Keep all of root's capabilities (needs --fakeroot in a user " +
			"namespace; it is then the default).",
		"noprivs": "Drop all capabilities, also root's with --fakeroot (--add-caps " +
			"still applies).",
		"security": "seccomp:FILE (an OCI/Docker seccomp profile for the payload), " +
			"apparmor:NAME, selinux:LABEL (warned about and ignored), uid:N, gid:N. " +
			"Repeatable.",
		"net": "New network namespace. Only --network none (loopback only) works " +
			"without setuid network setup.",
		"network": "Network type with --net: only \"none\" is possible rootless.",
		"netargs": "Network arguments (need setuid network setup; refused).",
	} {
		helpVars[k] = v
	}
}

// errNetwork is Apptainer's refusal of a network other than "none" without
// setuid network setup, word for word (hence the capital letters in this
// file's errors: scripts match Apptainer's messages).
var errNetwork = errors.New("network requires root or a suid installation with " +
	"/etc/subuid --fakeroot; non-root users can only use --network=none unless permitted " +
	"by the administrator")

// errKeepPrivs is Apptainer's refusal of --keep-privs to a user who is not
// root in the container.
var errKeepPrivs = errors.New("Could not configure --keep-privs: --keep-privs requires " +
	"root privileges")

// securitySpec applies the security flags to spec: capabilities, the
// network namespace, and --security options. Warnings go to log; what
// cannot be done at all is an error (exit 255), as in Apptainer.
func securitySpec(f *SecurityFlags, spec *sandbox.Spec, log *slog.Logger) error {
	if f.KeepPrivs && !spec.Fakeroot {
		return errKeepPrivs
	}
	spec.Caps = capsFrom(f, log)

	if err := networkSpec(f, spec, log); err != nil {
		return err
	}
	return securityOptions(f.Security, spec, log)
}

// capsFrom computes the payload's capabilities from the flags, warning
// about unknown names as Apptainer does.
func capsFrom(f *SecurityFlags, log *slog.Logger) sandbox.Caps {
	add, unknown := sandbox.ParseCaps(f.AddCaps)
	if len(unknown) > 0 {
		log.Warn("won't add unknown capability: " + strings.Join(unknown, ","))
	}
	drop, unknown := sandbox.ParseCaps(f.DropCaps)
	if len(unknown) > 0 {
		log.Warn("won't drop unknown capability: " + strings.Join(unknown, ","))
	}
	return sandbox.Caps{Add: add, Drop: drop, NoPrivs: f.NoPrivs && !f.KeepPrivs}
}

// networkSpec handles --net, --network and --network-args: a network
// namespace of its own needs no privilege, but connecting it anywhere
// needs Apptainer's setuid CNI setup.
func networkSpec(f *SecurityFlags, spec *sandbox.Spec, log *slog.Logger) error {
	if !f.Net && f.Network == "" && len(f.NetworkArgs) == 0 {
		return nil
	}
	if !f.Net {
		log.Info("Setting --net (required by --network)")
	}
	if len(f.NetworkArgs) > 0 {
		return errors.New("--network-args: " + errNetwork.Error())
	}
	network := f.Network
	if network == "" {
		network = "bridge"
	}
	if network != "none" {
		if !spec.Fakeroot {
			return errNetwork
		}
		log.Warn("fakeroot with unprivileged installation or 'allow setuid = no' could " +
			"not use 'fakeroot' network, fallback to 'none' network")
	}
	spec.Net = true
	return nil
}

// securityOptions handles --security TYPE:VALUE. uid and gid must be the
// ids the payload has anyway: the user namespace maps no other.
func securityOptions(opts []string, spec *sandbox.Spec, log *slog.Logger) error {
	uid, gid := spec.UID, spec.GID
	if spec.Fakeroot {
		uid, gid = 0, 0
	}
	for _, o := range opts {
		kind, val, ok := strings.Cut(o, ":")
		if !ok || val == "" {
			return fmt.Errorf("--security %s: want TYPE:VALUE (seccomp, apparmor, selinux, "+
				"uid, gid)", o)
		}
		switch kind {
		case "seccomp":
			if spec.Seccomp != nil {
				return fmt.Errorf("--security %s: only one seccomp profile can be applied", o)
			}
			p, err := sandbox.ReadSeccompProfile(val)
			if err != nil {
				return err
			}
			spec.Seccomp = p
		case "apparmor", "selinux":
			log.Warn(fmt.Sprintf("--security %s: husk cannot apply %s profiles; "+
				"the container runs without it", o, kind))
		case "uid", "gid":
			want := uid
			if kind == "gid" {
				want = gid
				val, _, _ = strings.Cut(val, ":")
			}
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return fmt.Errorf("--security %s: failed to parse provided %s", o,
					strings.ToUpper(kind))
			}
			if uint32(n) != want {
				return fmt.Errorf("--security %s: only %s %d is mapped in husk's user "+
					"namespace (use --fakeroot for 0)", o, kind, want)
			}
		default:
			return fmt.Errorf("--security %s: unknown type %q (seccomp, apparmor, selinux, "+
				"uid, gid)", o, kind)
		}
	}
	return nil
}
