package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// InstanceCmd groups the instance subcommands.
type InstanceCmd struct {
	Start InstanceStartCmd `cmd:"" help:"Start a named instance of a container."`
	Run   InstanceRunCmd   `cmd:"" help:"Start a named instance running its runscript."`
	List  InstanceListCmd  `cmd:"" help:"List your running instances."`
	Stop  InstanceStopCmd  `cmd:"" help:"Stop named instances."`
	Stats InstanceStatsCmd `cmd:"" help:"Show an instance's CPU, memory and process count."`
}

// InstanceStartCmd is `husk instance start [flags] IMAGE NAME [ARGS...]`.
type InstanceStartCmd struct {
	ActionFlags
	PidFile string   `placeholder:"FILE" help:"${pidfile}" env:"HUSK_PID_FILE,APPTAINER_PID_FILE"`
	Boot    bool     `help:"Run /sbin/init (needs root; refused, as by Apptainer)." env:"HUSK_BOOT,APPTAINER_BOOT"`
	Image   string   `arg:"" help:"${img}"`
	Name    string   `arg:"" help:"Instance name ([a-zA-Z0-9._-]+)."`
	Args    []string `arg:"" optional:"" passthrough:"" help:"Arguments for the startscript."`
	// action is the payload: "start" (the startscript) or "run".
	action string
}

// Help implements kong.HelpProvider.
func (InstanceStartCmd) Help() string {
	return `Runs /.singularity.d/startscript (if any) in a new container and keeps the
container up in the background until 'husk instance stop'. Run commands in it
with instance://NAME; they share its union (and its overlay, written by the
instance alone). The output goes to ~/.husk/instances/logs/.

Example:
  husk instance start --overlay o.img debian.sif web
  husk exec instance://web sh -c 'echo hi > /data/x'
  husk instance stop web`
}

// InstanceRunCmd is `husk instance run [flags] IMAGE NAME [ARGS...]`: an
// instance whose payload is the runscript instead of the startscript.
type InstanceRunCmd struct {
	InstanceStartCmd
}

// Help implements kong.HelpProvider.
func (InstanceRunCmd) Help() string {
	return `Like 'husk instance start', but runs the runscript with ARGS; the instance
stays up after it exits, until 'husk instance stop'.

Example:
  husk instance run debian.sif job`
}

// Run implements `husk instance run`.
func (c *InstanceRunCmd) Run(g *globals) error {
	c.action = "run"
	return c.InstanceStartCmd.Run(g)
}

// InstanceListCmd is `husk instance list [--json] [NAME]`.
type InstanceListCmd struct {
	JSON bool   `short:"j" help:"Print JSON."`
	Logs bool   `short:"l" help:"Print the log paths."`
	Name string `arg:"" optional:"" help:"Instance name or glob (default *)."`
}

// Help implements kong.HelpProvider.
func (InstanceListCmd) Help() string {
	return `Lists your instances on this host; records of instances that no longer run
are removed.

Example:
  husk instance list --json`
}

// InstanceStopCmd is `husk instance stop [flags] [NAME]`.
type InstanceStopCmd struct {
	All     bool   `short:"a" help:"Stop all your instances."`
	Signal  string `short:"s" default:"SIGINT" help:"Signal to send (name or number)."`
	Force   bool   `short:"F" help:"Send SIGKILL."`
	Timeout int    `short:"t" default:"10" help:"Seconds before the instance is killed."`
	Name    string `arg:"" optional:"" help:"Instance name or glob."`
}

// Help implements kong.HelpProvider.
func (InstanceStopCmd) Help() string {
	return `Sends SIGINT (or --signal) to the instance and waits until it is gone and its
overlay is synced; after --timeout seconds it is killed.

Example:
  husk instance stop web
  husk instance stop --all`
}

// liveInstance is a listed instance.
type liveInstance struct {
	rec   *instanceRecord
	paths instancePaths
}

// instances returns the live instances matching glob, removing stale
// records on the way.
func instances(glob string) ([]liveInstance, error) {
	base, err := instanceBase()
	if err != nil {
		return nil, err
	}
	if glob == "" {
		glob = "*"
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "*"))
	var out []liveInstance
	for _, d := range dirs {
		name := filepath.Base(d)
		if ok, _ := filepath.Match(glob, name); !ok {
			continue
		}
		ip, err := pathsFor(name)
		if err != nil {
			return nil, err
		}
		rec, alive, err := readRecord(ip.Record)
		if err != nil || !alive {
			// A daemon still starting has no record yet but is alive; only
			// remove directories without a daemon behind them.
			if err == nil || !starting(ip) {
				os.RemoveAll(d)
			}
			continue
		}
		out = append(out, liveInstance{rec, ip})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Name < out[j].rec.Name })
	return out, nil
}

// starting says a record directory is fresh enough to belong to an
// instance that is still starting (no record written yet).
func starting(ip instancePaths) bool {
	st, err := os.Stat(ip.Dir)
	return err == nil && time.Since(st.ModTime()) < time.Minute
}

// Run implements `husk instance list`.
func (c *InstanceListCmd) Run(g *globals) error {
	list, err := instances(c.Name)
	if err != nil {
		return err
	}
	if c.JSON {
		type entry struct {
			Instance   string `json:"instance"`
			Pid        int    `json:"pid"`
			Img        string `json:"img"`
			IP         string `json:"ip"`
			LogErrPath string `json:"logErrPath"`
			LogOutPath string `json:"logOutPath"`
		}
		out := struct {
			Instances []entry `json:"instances"`
		}{Instances: []entry{}}
		for _, li := range list {
			r := li.rec
			out.Instances = append(out.Instances, entry{r.Name, r.Pid, r.Image, r.IP,
				r.LogErrPath, r.LogOutPath})
		}
		b, err := json.MarshalIndent(out, "", "\t")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 4, ' ', 0)
	if c.Logs {
		fmt.Fprintln(tw, "INSTANCE NAME\tPID\tLOGS")
	} else {
		fmt.Fprintln(tw, "INSTANCE NAME\tPID\tIP\tIMAGE")
	}
	for _, li := range list {
		r := li.rec
		if c.Logs {
			fmt.Fprintf(tw, "%s\t%d\t%s\n\t\t%s\n", r.Name, r.Pid, r.LogErrPath, r.LogOutPath)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.Pid, r.IP, r.Image)
	}
	return tw.Flush()
}

// Run implements `husk instance stop`.
func (c *InstanceStopCmd) Run(g *globals) error {
	if c.Name == "" && !c.All {
		return fmt.Errorf("husk instance stop needs an instance name or --all")
	}
	glob := c.Name
	if c.All {
		glob = "*"
	}
	sig, err := parseSignal(c.Signal)
	if err != nil {
		return err
	}
	if c.Force {
		sig = syscall.SIGKILL
	}
	list, err := instances(glob)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		if c.All {
			return nil
		}
		return fmt.Errorf("no instance found with name %s", c.Name)
	}
	for _, li := range list {
		r := li.rec
		g.info(fmt.Sprintf("Stopping %s instance of %s (PID=%d)", r.Name, r.Image, r.Pid))
		if err := syscall.Kill(stopTarget(r), sig); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("signalling instance %s (PID=%d): %w", r.Name, r.Pid, err)
		}
	}
	deadline := time.Now().Add(time.Duration(c.Timeout) * time.Second)
	for _, li := range list {
		r := li.rec
		killed := false
		for daemonAlive(r.PPid) || r.SharensMod && sharensAlive(r.PPid) {
			if !killed && time.Now().After(deadline) {
				g.info(fmt.Sprintf("Killing %s instance of %s (PID=%d) (Timeout)", r.Name,
					r.Image, r.Pid))
				_ = syscall.Kill(stopTarget(r), syscall.SIGKILL)
				killed = true
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// stopTarget is the process a stop signals: an instance's stage 2, or a
// --sharens group's first husk, which passes it to its command and stops
// the group's others (its stage 2 ends with that command, while the
// others may run on).
func stopTarget(r *instanceRecord) int {
	if r.SharensMod {
		return r.PPid
	}
	return r.Pid
}

// parseSignal accepts SIGINT, INT, int or 2.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
