package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/transport/client"
)

type clusterCmd struct {
	Status clusterStatusCmd `cmd:"" help:"Show members (with their gRPC, REST and Kafka addresses and Kafka broker IDs), Raft state and partition leaderships."`
	Health clusterHealthCmd `cmd:"" help:"Check the cluster: exit 0 when healthy, 1 with the reasons when not (for scripts and probes)."`
}

type clusterStatusCmd struct {
	clientFlags `embed:""`
}

func (c *clusterStatusCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		st, err := cl.ClusterStatus(ctx)
		if err != nil {
			return cliError("cluster status", err)
		}
		if c.json() {
			return writeJSON(os.Stdout, st)
		}
		return printClusterStatus(os.Stdout, st)
	})
}

// printClusterStatus prints the answering agent's Raft state and one row
// per member.
func printClusterStatus(out io.Writer, st client.ClusterStatus) error {
	fmt.Fprintf(out, "answered by %s (%s); raft leader %s, term %d, commit %d, applied %d\n\n",
		st.NodeID, st.RaftState, orDash(st.RaftLeader), st.RaftTerm, st.CommitIndex, st.AppliedIndex)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AGENT\tGOSSIP\tRAFT\tLEADER\tGRPC\tREST\tPEER\tKAFKA (BROKER)\tPARTITIONS LED")
	for _, m := range st.Members {
		lead := ""
		if m.RaftLeader {
			lead = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d %s\n", m.NodeID, m.GossipState, m.Suffrage, lead,
			orDash(m.GRPCAddress), orDash(m.HTTPAddress), orDash(m.PeerAddress), kafkaColumn(m), len(m.Leaderships), abbreviate(m.Leaderships, 6))
	}
	return w.Flush()
}

// kafkaColumn is a member's Kafka address and broker ID ("-" when it has no
// Kafka listener; "(-)" while it has no broker ID yet).
func kafkaColumn(m client.ClusterMember) string {
	if m.KafkaAddress == "" {
		return "-"
	}
	if m.BrokerID <= 0 {
		return m.KafkaAddress + " (-)"
	}
	return fmt.Sprintf("%s (%d)", m.KafkaAddress, m.BrokerID)
}

type clusterHealthCmd struct {
	clientFlags       `embed:""`
	MaxRaftLag        uint64        `name:"max-raft-lag" default:"5000" help:"Raft log entries a voter may trail the leader's commit index."`
	MaxContact        time.Duration `name:"max-contact" default:"10s" help:"Longest a voter may go without hearing from the leader."`
	MaxCheckpointLag  time.Duration `name:"max-checkpoint-lag" default:"1m" help:"Largest age of the newest state in Postgres (when the agents checkpoint: DATABASE_URL)."`
	MaxUnflushedBytes int64         `name:"max-unflushed-bytes" default:"134217728" help:"Largest unflushed backlog of one agent, in bytes (produce answers 503 above the agent's MAX_UNFLUSHED_BYTES, 256 MiB by default)."`
}

// Validate implements kong's hook: a bad threshold exits 2.
func (c *clusterHealthCmd) Validate() error {
	if c.MaxRaftLag == 0 || c.MaxContact <= 0 || c.MaxCheckpointLag <= 0 || c.MaxUnflushedBytes <= 0 {
		return errors.New("--max-raft-lag, --max-contact, --max-checkpoint-lag and --max-unflushed-bytes must be positive")
	}
	return nil
}

func (c *clusterHealthCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		rep, err := cl.CheckHealth(ctx, client.HealthThresholds{
			MaxRaftLag: c.MaxRaftLag, MaxContact: c.MaxContact, MaxCheckpointLag: c.MaxCheckpointLag, MaxUnflushedBytes: c.MaxUnflushedBytes,
		})
		if err != nil {
			return cliError("cluster health", err)
		}
		if c.json() {
			err = writeJSON(os.Stdout, rep)
		} else {
			err = printHealth(os.Stdout, rep)
		}
		if err != nil {
			return err
		}
		if !rep.Healthy {
			return unhealthyError{n: len(rep.Problems)}
		}
		return nil
	})
}

// printHealth prints one row per agent, then the verdict and its reasons.
func printHealth(out io.Writer, rep client.HealthReport) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AGENT\tGRPC\tGOSSIP\tRAFT\tSTATE\tAPPLIED\tCONTACT\tREADY\tUNFLUSHED")
	for _, p := range rep.Agents {
		m := p.Member
		state, applied, contact, ready, unflushed := "unreachable", "-", "-", "-", "-"
		if st := p.Status; st != nil {
			state, applied, ready = st.RaftState, fmt.Sprint(st.AppliedIndex), fmt.Sprint(st.Ready)
			contact, unflushed = contactCell(st), fmt.Sprint(st.UnflushedBytes)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.NodeID, orDash(m.GRPCAddress), m.GossipState, m.Suffrage,
			state, applied, contact, ready, unflushed)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if rep.Healthy {
		_, err := fmt.Fprintf(out, "\nhealthy: raft leader %s, %d agents\n", rep.RaftLeader, len(rep.Agents))
		return err
	}
	fmt.Fprintf(out, "\nNOT HEALTHY (%d problems):\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "  - %s\n", p)
	}
	return nil
}

// contactCell is how long ago a follower heard from the leader ("-" on
// the leader).
func contactCell(st *client.ClusterStatus) string {
	switch {
	case st.RaftState == "Leader":
		return "-"
	case st.LastContactMs < 0:
		return "never"
	}
	return (time.Duration(st.LastContactMs) * time.Millisecond).String()
}

// unhealthyError is cluster health's error: the reasons are on stdout.
type unhealthyError struct{ n int }

func (e unhealthyError) Error() string {
	return fmt.Sprintf("cluster is not healthy (%d problems)", e.n)
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
