// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fusermount3 mode (see fusermount_linux.go). fusermount3 mounts in the
// mount namespace of its caller only, and a copy of that mount in stage
// 1's namespace is locked there (mount_namespaces(7)): stage 1 could not
// unmount it, and a server inside stage 1 would wait for its own mount
// to go away forever. So the union is served from outside:
//
//   - Stage 0 makes a private directory next to the session directory
//     (<session>.root, mode 0700) and starts stage 3 in its own
//     namespaces, with the image files, the plan, a log pipe and one end
//     of a socket pair.
//   - Stage 3 has the Mounter mount the union there; go-fuse runs
//     fusermount3 (the _FUSE_COMMFD protocol). It says it is ready on the
//     socket, then creates the mount points stage 1 asks for on it.
//   - Stage 0 starts stage 1 with the socket's other end. Stage 1 binds
//     the mount as the container root instead of mounting FUSE; the rest
//     of the container is built and run as usual.
//   - When stage 1 exits its end closes. Stage 3 then unmounts with
//     fusermount3 -u, waits until the kernel has let go of the file
//     system (stage 1's namespace is gone with stage 1), syncs and
//     closes the layers, and exits; stage 0 waits for it and reports
//     what failed.
//
// Stage 3 has no parent-death signal and ignores the forwarded signals:
// if husk is killed, stage 1 (SIGTERM from its own parent-death signal)
// still stops the payload and exits, and stage 3 still unmounts, syncs
// and exits after it. The image files stay open, and their locks held,
// in stage 3 until the layers are closed.

// serveStage is the stage number of the union's server in fusermount3
// mode (the value of _HUSK_STAGE).
const serveStage = 3

// socket messages: stage 3 says it is ready with readyMsg; stage 1 sends
// mountpointReq and gets a mountpointResp back.
const readyMsg = "ready"

type mountpointReq struct {
	Path string `json:"p"`
	Dir  bool   `json:"d"`
}

type mountpointResp struct {
	Err   string `json:"e,omitempty"`
	Errno int    `json:"n,omitempty"`
}

// maxMsg bounds a message on the socket (a path and some JSON).
const maxMsg = 8 << 10

// runHosted runs the container with the union mounted through fusermount3
// by stage 3 and returns as runStage1 does, once stage 3 has synced and
// closed the layers.
func runHosted(ctx context.Context, p *plan, fw *forwarder, files []*os.File,
	listen *os.File, log *slog.Logger, onStart func(pid int)) (int, error) {
	p.Spec.Fusermount = true
	p.HostUnion = p.Session + ".root"
	if err := os.Mkdir(p.HostUnion, 0o700); err != nil {
		return setupFailed, fmt.Errorf("sandbox: union mount point: %w", err)
	}
	// Stage 3 removes it after unmounting; this covers a stage 3 that
	// failed (a mounted directory is busy and stays).
	defer os.Remove(p.HostUnion)

	srv, conn, err := startServer(p, files, log)
	if err != nil {
		return setupFailed, err
	}
	p.serverPid = srv.cmd.Process.Pid
	status, err := runStage1(ctx, p, fw, nil, listen, log, onStart, conn)
	select {
	case <-srv.done:
	case <-time.After(serverGrace):
		// Processes that outlived a killed stage 1 still use the union:
		// stage 3 serves them and syncs the layers when they are gone.
		log.Warn("husk's union server waits for processes left in the container; " +
			"it unmounts and syncs the overlay once they exit")
		if err == nil {
			status, err = setupFailed, errors.New("the container's processes did not "+
				"stop; its overlay is synced when they do")
		}
		return status, err
	}
	rep := srv.rep
	if rep.fatal != nil {
		log.Debug("union server failed", "error", rep.fatal)
		if err == nil {
			status, err = setupFailed, rep.fatal
		}
	}
	// A damaged image: stage 3's layer reported it, stage 1 failed.
	return status, withImageFault(err, rep.fault)
}

// serverGrace is how long stage 0 waits for stage 3 after stage 1 has
// exited. Stage 3 is done within milliseconds unless processes of the
// container outlived stage 1 (killed with SIGKILL) and still use the
// union; stage 3 keeps serving them.
//
// TODO: a mount namespace made on the host while the container runs (by
// another husk, unshare, a service) holds a copy of the union's mount;
// the connection then lives on after stage 3 unmounts it, and stage 3
// waits for that namespace to end (no fusectl to abort it from here), so
// the run fails after serverGrace. The in-namespace mode is not exposed.
const serverGrace = 10 * time.Second

// server is a started stage 3. done is closed when it has exited and
// everything it reported is in rep.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	rep  relayed
	// mountpoint is the union's, unmounted lazily if stage 3 dies.
	mountpoint string
}

// startServer starts stage 3 and waits until the union is mounted. It
// returns stage 1's end of the socket.
func startServer(p *plan, files []*os.File, log *slog.Logger) (*server, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "union-socket")
	theirs := os.NewFile(uintptr(fds[1]), "union-socket")
	defer theirs.Close()
	specR, specW, err := os.Pipe()
	if err != nil {
		ours.Close()
		return nil, nil, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer specR.Close()
	defer specW.Close()
	logR, logW, err := os.Pipe()
	if err != nil {
		ours.Close()
		return nil, nil, fmt.Errorf("sandbox: pipe: %w", err)
	}
	defer logW.Close()

	// The socket goes in the place of an instance's join socket (see
	// openStage).
	cmd := stageCommand(serveStage, files, specR, logW, theirs)
	// Not the terminal: stage 3 never reads it, and a pipe of husk's
	// output would not end while stage 3 outlives a killed husk.
	cmd.Stdin, cmd.Stdout = nil, nil
	if p.sessionLock != nil {
		// Stage 3 may outlive stage 1: it keeps the session's lock too.
		cmd.ExtraFiles = append(cmd.ExtraFiles, p.sessionLock)
	}
	log.Debug("starting the union server", "mountpoint", p.HostUnion)
	if err := cmd.Start(); err != nil {
		ours.Close()
		logR.Close()
		return nil, nil, fmt.Errorf("sandbox: starting the union server: %w", err)
	}
	srv := &server{cmd: cmd, done: make(chan struct{}), mountpoint: p.HostUnion}
	go srv.wait(logR, log)
	logW.Close()
	theirs.Close()
	if err := json.NewEncoder(specW).Encode(p); err != nil {
		_ = cmd.Process.Kill()
	}
	specW.Close()

	buf := make([]byte, len(readyMsg))
	n, rerr := ours.Read(buf)
	if rerr != nil || string(buf[:n]) != readyMsg {
		ours.Close()
		<-srv.done
		err := srv.rep.fatal
		if err == nil {
			err = fmt.Errorf("sandbox: the union server ended before mounting (%v)", rerr)
		}
		return nil, nil, err
	}
	log.Debug("union mounted through fusermount3", "mountpoint", p.HostUnion)
	return srv, ours, nil
}

// wait relays stage 3's log until it has exited, then closes done.
func (s *server) wait(logR *os.File, log *slog.Logger) {
	defer close(s.done)
	s.rep = relay(logR, log)
	logR.Close()
	werr := s.cmd.Wait()
	sig := killedBy(s.cmd.ProcessState)
	if sig != 0 {
		// Its FUSE connection died with it: the mount on the host
		// answers ENOTCONN until it is unmounted.
		lazyUnmount(s.mountpoint, log)
	}
	switch {
	case s.rep.fatal != nil:
	case sig != 0:
		s.rep.fatal = fmt.Errorf("husk's union server was killed by signal %d; the "+
			"overlay may need journal replay on next use", sig)
	case werr != nil:
		s.rep.fatal = fmt.Errorf("husk's union server: %w", werr)
	}
}

// lazyUnmount detaches a dead FUSE mount of the user's with fusermount3.
func lazyUnmount(dir string, log *slog.Logger) {
	path, err := lookFusermount()
	if err == nil {
		var out []byte
		out, err = exec.Command(path, "-u", "-z", dir).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
	}
	log.Debug("unmounting the dead union server's mount", "dir", dir, "error", err)
}

// serve is stage 3: it mounts the union at the plan's HostUnion, creates
// mount points for stage 1 until stage 1's end of the socket closes,
// then unmounts, syncs and closes the union.
func serve(m Mounter, fw *forwarder, fds string) int {
	// Stage 1 tears the container down on these signals; this process
	// must outlive it to sync the layers.
	fw.stopIgnoring()
	sio, err := openStage(serveStage, fds)
	if err != nil {
		return sio.fail(err)
	}
	conn := sio.listen
	sio.listen = nil
	if conn == nil || sio.plan.HostUnion == "" {
		return sio.fail(fmt.Errorf("%w: no union socket or mount point", errStage))
	}
	defer conn.Close()
	logIDs(sio.log, "union server")
	if m == nil {
		return sio.fail(errors.New("sandbox: no Mounter registered with sandbox.Main"))
	}
	target := sio.plan.HostUnion
	mounted, err := callMount(m, sio.plan.Spec, sio.files, target)
	if err != nil {
		return sio.fail(fmt.Errorf("mounting the container through fusermount3: %w", err))
	}
	sio.log.Debug("union mounted", "target", target)
	startupOver(sio.log)
	if _, err := conn.Write([]byte(readyMsg)); err != nil {
		sio.log.Debug("husk went away before the container started", "error", err)
	} else {
		serveMountpoints(conn, mounted, sio.log)
	}

	// Stage 1 is gone: nothing in a container uses the union any more.
	sio.log.Debug("container gone, unmounting")
	err = mounted.Unmount()
	if rerr := os.Remove(target); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return sio.fail(fmt.Errorf("unmounting the container: %w", err))
	}
	sio.log.Debug("union unmounted and synced")
	return 0
}

// serveMountpoints answers stage 1's mount point requests until its end
// of the socket closes.
func serveMountpoints(conn *os.File, mounted Mounted, log *slog.Logger) {
	buf := make([]byte, maxMsg)
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				log.Debug("union socket", "error", err)
			}
			return
		}
		var req mountpointReq
		var resp mountpointResp
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			resp.Err = fmt.Sprintf("%v: bad mount point request: %v", errStage, err)
		} else if err := mounted.Mountpoint(req.Path, req.Dir); err != nil {
			resp.Err = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				resp.Errno = int(errno)
			}
		}
		b, _ := json.Marshal(resp)
		if _, err := conn.Write(b); err != nil {
			return
		}
	}
}

// hostedUnion is stage 1's Mounted in fusermount3 mode: the union
// mounted by stage 3, bound at final.
type hostedUnion struct {
	mu    sync.Mutex // one request at a time on conn
	conn  *os.File
	final string
}

// bindHostUnion binds the union that stage 3 mounted at the plan's
// HostUnion on final.
func bindHostUnion(p *plan, final string) (Mounted, error) {
	if p.UnionFD < 3 {
		return nil, fmt.Errorf("%w: union socket fd %d", errStage, p.UnionFD)
	}
	conn := os.NewFile(uintptr(p.UnionFD), "union-socket")
	if err := mount(p.HostUnion, final, "", unix.MS_BIND, ""); err != nil {
		conn.Close()
		return nil, err
	}
	return &hostedUnion{conn: conn, final: final}, nil
}

// Mountpoint implements Mounted: stage 3 creates the entry.
func (h *hostedUnion) Mountpoint(path string, dir bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := json.Marshal(mountpointReq{Path: path, Dir: dir})
	if err != nil {
		return err
	}
	if _, err := h.conn.Write(b); err != nil {
		return fmt.Errorf("asking the union server for %s: %w", path, err)
	}
	buf := make([]byte, maxMsg)
	n, err := h.conn.Read(buf)
	if err != nil || n == 0 {
		return fmt.Errorf("asking the union server for %s: no answer (%v)", path, err)
	}
	var resp mountpointResp
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		return fmt.Errorf("%w: bad mount point answer: %v", errStage, err)
	}
	if resp.Err == "" {
		return nil
	}
	return &stageError{msg: resp.Err, errno: syscall.Errno(resp.Errno)}
}

// Unmount implements Mounted: it detaches stage 1's bind of the union
// and closes the socket, which tells stage 3 that it may unmount once
// stage 1 has exited (stage 1's namespace holds a locked copy of the
// mount until then).
func (h *hostedUnion) Unmount() error {
	err := unix.Unmount(h.final, unix.MNT_DETACH)
	if errors.Is(err, unix.ENOENT) {
		err = nil // the session directory was removed, which detached it
	}
	if err != nil {
		err = &os.PathError{Op: "umount", Path: h.final, Err: err}
	}
	h.conn.Close()
	return err
}
