package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport"
)

type clusterCmd struct {
	Status clusterStatusCmd `cmd:"" help:"Show members, Raft state and partition leaderships."`
}

type clusterStatusCmd struct {
	Server string `name:"server" default:"http://127.0.0.1:8080" env:"STREAMHOUSE_SERVER" help:"Agent REST base URL (https://... when the agent has TLS)."`
	Output string `name:"output" short:"o" default:"table" enum:"table,json" help:"table or json."`
	securityFlags
}

func (c *clusterStatusCmd) Run() error {
	cl, err := c.httpClient(nil, 10*time.Second, strings.HasPrefix(c.Server, "https://"))
	if err != nil {
		return err
	}
	resp, err := cl.Get(strings.TrimRight(c.Server, "/") + "/api/v1/cluster")
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", c.Server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if c.Output == "json" {
		return writeJSON(os.Stdout, json.RawMessage(body))
	}
	var st transport.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	fmt.Printf("answered by %s (%s); raft leader %s, term %d, commit %d, applied %d\n\n",
		st.NodeID, st.RaftState, orDash(st.Leader), st.Term, st.CommitIndex, st.AppliedIndex)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AGENT\tGOSSIP\tRAFT\tLEADER\tHTTP\tPEER\tPARTITIONS LED")
	for _, m := range st.Members {
		lead := ""
		if m.RaftLeader {
			lead = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d %s\n", m.ID, m.GossipState, m.Suffrage, lead, orDash(m.HTTPAddr), orDash(m.PeerAddr),
			len(m.Leaderships), abbreviate(m.Leaderships, 6))
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func abbreviate(items []string, n int) string {
	if len(items) == 0 {
		return ""
	}
	if len(items) <= n {
		return "(" + strings.Join(items, " ") + ")"
	}
	return "(" + strings.Join(items[:n], " ") + fmt.Sprintf(" +%d)", len(items)-n)
}
