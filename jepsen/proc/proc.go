package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// ErrExited is returned by WaitReady when the process ended before it was
// ready.
var ErrExited = errors.New("process exited during startup")

// Proc is a started process. Its methods are safe for concurrent use.
type Proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
}

// Start starts cmd with its stdout and stderr appended to logPath (created
// if missing), after a line "---- <time>: <banner>" when banner is not
// empty. On Linux the child gets SIGKILL when the calling process dies,
// even if a test panics. One goroutine waits for the process; it ends when
// the process does.
func Start(cmd *exec.Cmd, logPath, banner string) (*Proc, error) {
	logf, err := OpenLog(logPath, banner)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Run is Start, then Wait: it runs cmd to completion (a setup tool such as
// initdb) with its output appended to logPath.
func Run(cmd *exec.Cmd, logPath, banner string) error {
	p, err := Start(cmd, logPath, banner)
	if err != nil {
		return err
	}
	return p.Wait()
}

// Wait waits for the process to exit and returns its exit error (an
// *exec.ExitError when it did not exit 0).
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// OpenLog opens logPath for appending and writes the banner line (see
// Start) when banner is not empty.
func OpenLog(logPath, banner string) (*os.File, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if banner != "" {
		fmt.Fprintf(f, "---- %s: %s\n", time.Now().Format(time.RFC3339Nano), banner)
	}
	return f, nil
}

// Done is closed when the process has exited and been waited for.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends sig (SIGTERM, or a server's own shutdown signal), waits up to
// grace for the process to exit, then SIGKILLs it and waits. It returns an
// error when the signal could not be sent or the process had to be killed;
// the process is gone either way.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.Kill()
		return fmt.Errorf("sending %v: %w", sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("did not exit within %v after %v; killed", grace, sig)
	}
}

// CheckExecutable returns an error unless path is a regular file with an
// execute bit set.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
