package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// completionCmd prints a script that makes the shell ask the binary itself
// for completions (kongplete answers when COMP_LINE is set: see run).
type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// completionScripts are the shells' hooks; ${bin} is this binary's
// absolute path, ${cmd} the command name.
var completionScripts = map[string]string{
	"bash": "complete -C ${bin} ${cmd}\n",
	"zsh":  "autoload -U +X bashcompinit && bashcompinit\ncomplete -C ${bin} ${cmd}\n",
	"fish": `function __complete_${cmd}
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    ${bin}
end
complete -f -c ${cmd} -a "(__complete_${cmd})"
`,
}

func (c *completionCmd) Run() error {
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return fmt.Errorf("cannot find this binary's path: %w", err)
	}
	vars := map[string]string{"cmd": "streamhouse", "bin": shellQuote(bin)}
	fmt.Print(os.Expand(completionScripts[c.Shell], func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return "$" + k
	}))
	return nil
}

// shellQuote quotes a path for the scripts when it needs it.
func shellQuote(s string) string {
	if !strings.ContainsAny(s, " \t'\"$\\`") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
