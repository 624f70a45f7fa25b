//go:build !linux

package proc

import "os/exec"

// setDeathSignal does nothing where the parent-death signal is unavailable:
// a killed test binary may leave a server behind.
func setDeathSignal(*exec.Cmd) {}
