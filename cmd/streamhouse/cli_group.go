package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/transport/client"
)

type groupCmd struct {
	List     groupListCmd     `cmd:"" help:"List the consumer groups with their total lag."`
	Describe groupDescribeCmd `cmd:"" help:"Show a group's committed offset, high watermark and lag per partition."`
	Reset    groupResetCmd    `cmd:"" help:"Move a group's offsets for a topic."`
	Delete   groupDeleteCmd   `cmd:"" help:"Delete a consumer group and its offsets."`
}

type groupSummaryJSON struct {
	Group      string   `json:"group"`
	Topics     []string `json:"topics"`
	Partitions int      `json:"partitions"`
	TotalLag   int64    `json:"total_lag"`
}

type groupPartitionJSON struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Offset        int64  `json:"offset"`
	HighWatermark int64  `json:"high_watermark"`
	LowWatermark  int64  `json:"low_watermark"`
	Lag           int64  `json:"lag"`
	CommittedAtMs int64  `json:"committed_at_ms"`
	Metadata      string `json:"metadata,omitempty"`
}

type groupJSON struct {
	Group      string               `json:"group"`
	Partitions []groupPartitionJSON `json:"partitions"`
	TotalLag   int64                `json:"total_lag"`
	// Membership (group describe only).
	State      string            `json:"state,omitempty"`
	Protocol   string            `json:"protocol,omitempty"`
	Generation int32             `json:"generation,omitempty"`
	Leader     string            `json:"leader,omitempty"`
	Members    []groupMemberJSON `json:"members,omitempty"`
}

type groupMemberJSON struct {
	MemberID   string  `json:"member_id"`
	ClientID   string  `json:"client_id"`
	ClientHost string  `json:"client_host"`
	Partitions []int32 `json:"partitions"` // of every topic, in assignment order
	Assignment string  `json:"assignment"` // "topic:0,1 other:2"
}

// withMembers adds a group's membership to its JSON.
func withMembers(out groupJSON, m client.GroupMembers) groupJSON {
	out.State, out.Protocol, out.Generation, out.Leader = m.State, m.Protocol, m.Generation, m.LeaderID
	for _, x := range m.Members {
		mj := groupMemberJSON{MemberID: x.MemberID, ClientID: x.ClientID, ClientHost: x.ClientHost, Partitions: []int32{}, Assignment: assignmentText(x)}
		for _, tp := range x.Partitions {
			mj.Partitions = append(mj.Partitions, tp.Partitions...)
		}
		out.Members = append(out.Members, mj)
	}
	return out
}

// assignmentText is a member's assignment as "topic:0,1 other:2".
func assignmentText(m fsm.MemberDescription) string {
	var parts []string
	for _, tp := range m.Partitions {
		ps := make([]string, len(tp.Partitions))
		for i, p := range tp.Partitions {
			ps[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, tp.Topic+":"+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ")
}

// printMembers prints a group's membership after its offsets.
func printMembers(out io.Writer, m client.GroupMembers) error {
	if len(m.Members) == 0 {
		return nil // no members: the offsets say it all
	}
	fmt.Fprintf(out, "\nstate %s, generation %d, protocol %s\n", m.State, m.Generation, m.Protocol)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tCLIENT\tHOST\tASSIGNMENT")
	for _, x := range m.Members {
		leader := ""
		if x.MemberID == m.LeaderID {
			leader = " (leader)"
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\n", x.MemberID, leader, x.ClientID, x.ClientHost, assignmentText(x))
	}
	return w.Flush()
}

func toGroupJSON(d client.GroupDescription) groupJSON {
	out := groupJSON{Group: d.Group, TotalLag: d.TotalLag, Partitions: make([]groupPartitionJSON, len(d.Partitions))}
	for i, p := range d.Partitions {
		out.Partitions[i] = groupPartitionJSON{Topic: p.Topic, Partition: p.Partition, Offset: p.Offset, HighWatermark: p.HighWatermark,
			LowWatermark: p.LowWatermark, Lag: p.Lag, CommittedAtMs: p.CommittedAt, Metadata: p.Metadata}
	}
	return out
}

func printGroup(out io.Writer, d client.GroupDescription) error {
	return printGroupMembers(out, d, client.GroupMembers{})
}

// printGroupMembers prints the offsets table, the members (when the group
// has any) and the total lag last.
func printGroupMembers(out io.Writer, d client.GroupDescription, m client.GroupMembers) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tOFFSET\tHIGH WATERMARK\tLAG\tCOMMITTED")
	for _, p := range d.Partitions {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\n", p.Topic, p.Partition, p.Offset, p.HighWatermark, p.Lag, msTime(p.CommittedAt))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := printMembers(out, m); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\ngroup %s: total lag %d\n", d.Group, d.TotalLag)
	return err
}

type groupListCmd struct {
	clientFlags `embed:""`
}

func (c *groupListCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		gs, err := cl.ListGroups(ctx)
		if err != nil {
			return cliError("list groups", err)
		}
		if c.json() {
			out := make([]groupSummaryJSON, len(gs))
			for i, g := range gs {
				out[i] = groupSummaryJSON{Group: g.Group, Topics: g.Topics, Partitions: g.Partitions, TotalLag: g.TotalLag}
				if out[i].Topics == nil {
					out[i].Topics = []string{}
				}
			}
			return writeJSON(os.Stdout, out)
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "GROUP\tTOPICS\tPARTITIONS\tLAG")
		for _, g := range gs {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", g.Group, strings.Join(g.Topics, ","), g.Partitions, g.TotalLag)
		}
		return w.Flush()
	})
}

type groupDescribeCmd struct {
	clientFlags `embed:""`
	Group       string `arg:"" help:"Consumer group."`
}

func (c *groupDescribeCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		d, m, err := cl.DescribeGroupMembers(ctx, c.Group)
		if err != nil {
			return cliError(fmt.Sprintf("describe group %q", c.Group), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, withMembers(toGroupJSON(d), m))
		}
		return printGroupMembers(os.Stdout, d, m)
	})
}

type groupResetCmd struct {
	clientFlags `embed:""`
	Group       string  `arg:"" help:"Consumer group."`
	Topic       string  `name:"topic" short:"t" required:"" help:"Topic whose offsets move."`
	To          string  `name:"to" required:"" enum:"earliest,latest,offset,timestamp" help:"Where to: earliest, latest, offset (with --offset) or timestamp (with --timestamp)."`
	Offset      *int64  `name:"offset" help:"Target offset for --to offset (clamped to the partition's range)."`
	Timestamp   string  `name:"timestamp" help:"Target time for --to timestamp: unix milliseconds or RFC 3339; the group moves to the first record at or after it."`
	Partitions  []int32 `name:"partition" short:"P" help:"Partition to reset (repeatable; default: every partition of the topic)."`
}

func parseTimestamp(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("--timestamp %q: want unix milliseconds or an RFC 3339 time", s)
	}
	return t.UnixMilli(), nil
}

// Validate checks the flags while kong parses them (a bad command line
// exits 2).
func (c *groupResetCmd) Validate() error {
	switch c.To {
	case client.ResetOffset:
		if c.Offset == nil {
			return fmt.Errorf("--to offset needs --offset N")
		}
	case client.ResetTimestamp:
		if c.Timestamp == "" {
			return fmt.Errorf("--to timestamp needs --timestamp MS")
		}
		if _, err := parseTimestamp(c.Timestamp); err != nil {
			return err
		}
	}
	return nil
}

func (c *groupResetCmd) Run() error {
	r := client.GroupReset{Strategy: c.To, Topic: c.Topic, Partitions: c.Partitions}
	switch c.To {
	case client.ResetOffset:
		r.Offset = *c.Offset
	case client.ResetTimestamp:
		r.TimestampMs, _ = parseTimestamp(c.Timestamp) // checked by Validate
	}
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		d, err := cl.ResetGroup(ctx, c.Group, r)
		if err != nil {
			return cliError(fmt.Sprintf("reset group %q", c.Group), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, toGroupJSON(d))
		}
		fmt.Printf("reset group %s on %s to %s\n\n", c.Group, c.Topic, c.To)
		return printGroup(os.Stdout, d)
	})
}

type groupDeleteCmd struct {
	clientFlags `embed:""`
	Group       string `arg:"" help:"Consumer group."`
}

func (c *groupDeleteCmd) Run() error {
	return withClient(&c.clientFlags, func(ctx context.Context, cl *client.Client) error {
		if err := cl.DeleteGroup(ctx, c.Group); err != nil {
			return cliError(fmt.Sprintf("delete group %q", c.Group), err)
		}
		if c.json() {
			return writeJSON(os.Stdout, map[string]string{"deleted": c.Group})
		}
		fmt.Printf("deleted group %s\n", c.Group)
		return nil
	})
}
