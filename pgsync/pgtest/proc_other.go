//go:build unix && !linux

package pgtest

import (
	"os/exec"
	"syscall"
)

// setProcAttr runs cmd as cred (nil = the current user). The parent-death
// signal is unavailable here: a killed test binary may leave a server
// behind.
func setProcAttr(cmd *exec.Cmd, cred *syscall.Credential) {
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
}
