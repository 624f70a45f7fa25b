package pgtest

import (
	"os/exec"
	"syscall"
)

// setProcAttr runs cmd as cred (nil = the current user) and makes the
// kernel kill it if the test process dies, so a test binary killed on
// timeout does not leave servers behind. Go sets the parent-death signal
// after switching credentials, so the switch does not clear it.
func setProcAttr(cmd *exec.Cmd, cred *syscall.Credential) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
}
