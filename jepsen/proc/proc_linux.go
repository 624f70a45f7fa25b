package proc

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the child get SIGKILL when its parent dies, keeping
// whatever else the caller set (a Credential, for PostgreSQL under root).
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
