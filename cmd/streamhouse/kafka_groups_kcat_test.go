package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/testkit"
)

// kcatConsumer is a `kcat -G group topic` process; its stderr carries
// librdkafka's "rebalanced ... assigned:" lines, its stdout the values.
type kcatConsumer struct {
	cmd            *exec.Cmd
	stdout, stderr *testkit.SyncBuffer
}

func startKcat(t *testing.T, addr, group, topic string) *kcatConsumer {
	t.Helper()
	bin, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (.ci/run installs it): %v", err)
	}
	k := &kcatConsumer{stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}}
	k.cmd = exec.Command(bin, "-u", "-b", addr, "-G", group, "-o", "beginning", "-f", "%p %o %s\n",
		"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", topic)
	k.cmd.Stdout, k.cmd.Stderr = k.stdout, k.stderr
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.stop()
		if t.Failed() {
			t.Logf("kcat -G %s stdout:\n%s\nstderr (tail):\n%s", group, k.stdout.String(), lastBytes(k.stderr.String(), 4096))
		}
	})
	return k
}

// stop ends kcat with SIGTERM (it leaves the group) and waits.
func (k *kcatConsumer) stop() {
	if k.cmd.ProcessState != nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = k.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-done
	}
}

var kcatAssigned = regexp.MustCompile(`rebalanced \(memberid [^)]*\): assigned: (.*)`)

// assigned is the partitions of kcat's latest assignment ("kc [0], kc [1]").
func (k *kcatConsumer) assigned() []string {
	m := kcatAssigned.FindAllStringSubmatch(k.stderr.String(), -1)
	if len(m) == 0 {
		return nil
	}
	last := m[len(m)-1][1]
	if strings.HasPrefix(last, "(none)") {
		return nil
	}
	return strings.Split(strings.TrimSpace(last), ", ")
}

// TestKcatConsumersSplitPartitions: two `kcat -G` consumers of one group
// split the partitions of a topic between them, and each record produced
// afterwards is printed by the consumer that owns its partition.
func TestKcatConsumersSplitPartitions(t *testing.T) {
	base, addr := startKafkaAgent(t)
	const parts = 4
	createTopic(t, base, "kc", parts)
	a := startKcat(t, addr, "cats", "kc")
	waitFor(t, 30*time.Second, "the first kcat owns every partition", func() bool { return len(a.assigned()) == parts })
	b := startKcat(t, addr, "cats", "kc")
	waitFor(t, 30*time.Second, "two kcat consumers split the partitions", func() bool {
		pa, pb := a.assigned(), b.assigned()
		if len(pa) == 0 || len(pb) == 0 || len(pa)+len(pb) != parts {
			return false
		}
		seen := map[string]bool{}
		for _, p := range append(pa, pb...) {
			seen[p] = true
		}
		return len(seen) == parts
	})
	pa, pb := a.assigned(), b.assigned()
	t.Logf("kcat a: %v, kcat b: %v", pa, pb)
	for p := int32(0); p < parts; p++ {
		produceToPartition(t, base, "kc", p, 5)
	}
	owner := map[string]*kcatConsumer{}
	for _, p := range pa {
		owner[p] = a
	}
	for _, p := range pb {
		owner[p] = b
	}
	waitFor(t, 30*time.Second, "every record printed by its partition's owner", func() bool {
		for p := 0; p < parts; p++ {
			out := owner[fmt.Sprintf("kc [%d]", p)].stdout.String()
			for i := 0; i < 5; i++ {
				if !strings.Contains(out, fmt.Sprintf("%d %d p%d-%d\n", p, i, p, i)) {
					return false
				}
			}
		}
		return true
	})
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
