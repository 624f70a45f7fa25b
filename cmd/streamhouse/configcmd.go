package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/alecthomas/kong"
)

// configCmd shows the connection settings a client command would use and
// where each comes from. It contacts nothing.
type configCmd struct {
	connFlags `embed:""`
	Output    string `name:"output" short:"o" default:"table" enum:"table,json" help:"Output format: table or json."`
}

// settingJSON is one setting in `config -o json`.
type settingJSON struct {
	Setting string `json:"setting"`
	Value   any    `json:"value"`
	Source  string `json:"source"`
}

// configJSON is `config -o json`.
type configJSON struct {
	ConfigFile string        `json:"config_file"`
	Settings   []settingJSON `json:"settings"`
}

func (c *configCmd) Run(kctx *kong.Context, r *profileResolver) error {
	if err := r.load(kctx); err != nil {
		return err
	}
	out := configJSON{ConfigFile: r.path}
	token := "(none)"
	if c.Token != "" {
		token = fmt.Sprintf("(set, %d characters)", len(c.Token))
	}
	for _, s := range []struct {
		flag  string
		value any
	}{
		{"server", string(c.Server)}, {"tls", c.TLS}, {"tls-ca", c.TLSCA},
		{"insecure-skip-verify", c.InsecureSkipVerify}, {"token", token},
	} {
		out.Settings = append(out.Settings, settingJSON{Setting: s.flag, Value: s.value, Source: settingSource(kctx, r, s.flag)})
	}
	if c.Output == "json" {
		return writeJSON(os.Stdout, out)
	}
	if out.ConfigFile == "" {
		fmt.Printf("config file: none (%s does not exist)\n\n", orDash(defaultConfigPath()))
	} else {
		fmt.Printf("config file: %s\n\n", out.ConfigFile)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SETTING\tVALUE\tSOURCE")
	for _, s := range out.Settings {
		fmt.Fprintf(w, "--%s\t%v\t%s\n", s.Setting, s.Value, s.Source)
	}
	return w.Flush()
}

// settingSource says where the flag's value came from: the command line,
// an environment variable, the config file, or the default.
func settingSource(kctx *kong.Context, r *profileResolver, name string) string {
	var flag *kong.Flag
	for _, p := range kctx.Path {
		if p.Flag != nil && p.Flag.Name == name {
			if p.Resolved {
				return r.source
			}
			return "flag"
		}
	}
	for _, f := range kctx.Flags() {
		if f.Name == name {
			flag = f
		}
	}
	if flag != nil {
		for _, e := range flag.Envs {
			if os.Getenv(e) != "" {
				return "environment " + e
			}
		}
	}
	return "default"
}
