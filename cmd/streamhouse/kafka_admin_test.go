package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// withKafka gives a test config a Kafka listener on a free port.
func withKafka(t testing.TB, c *agentCmd) {
	c.KafkaPort = freePort(t)
	c.KafkaAdvertised = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.KafkaPort))
}

// kafkaAdmin is a kadm client of addr over TLS (ca) with SASL/PLAIN.
func kafkaAdmin(t *testing.T, addr string, ca *transporttest.CA, user, pass string) *kadm.Client {
	t.Helper()
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.Dialer(dialer.DialContext),
		kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestKafkaAdminOverTLSAndSASL: an agent with TLS and API keys serves the
// Kafka admin APIs over TLS to SASL/PLAIN clients, enforces the keys'
// scopes and topics, and its changes are the ones REST shows.
func TestKafkaAdminOverTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "test CA")
	files := ca.Issue(t, "agent-1").Write(t, ca, dir, "agent")
	tokAdmin, kAdmin := newKey(t, "ops", transport.ScopeAdmin)
	tokRead, kRead := newKey(t, "reader", transport.ScopeRead)
	tokScoped, kScoped := newKey(t, "scoped", transport.ScopeRead, "orders")
	c := keyedConfig(t, dir, kAdmin, kRead, kScoped)
	c.TLSCertPath, c.TLSKeyPath = files.Cert, files.Key
	withKafka(t, c)
	a, err := startAgent(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	base := "https://" + a.http.Addr()
	h := newHTTPSClient(t, ca).as(tokAdmin)
	waitFor(t, 20*time.Second, "agent ready", func() bool {
		code, _, err := h.do("GET", base+"/ready", "")
		return err == nil && code == 200
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kafkaAdmin(t, c.KafkaAdvertised, ca, "ops", tokAdmin)

	res, err := adm.CreateTopic(ctx, 2, -1, map[string]*string{"retention.ms": kmsg.StringPtr("3600000")}, "orders")
	if err != nil || res.Err != nil {
		t.Fatalf("create: %v %+v", err, res)
	}
	if r, err := adm.CreateTopic(ctx, 1, -1, nil, "payments"); err != nil || r.Err != nil {
		t.Fatalf("create payments: %v %+v", err, r)
	}
	var tj transport.TopicJSON
	restTopic := func() transport.TopicJSON {
		t.Helper()
		tj = transport.TopicJSON{}
		if err := json.Unmarshal([]byte(h.must(t, "GET", base+"/api/v1/topics/orders", "", 200)), &tj); err != nil {
			t.Fatal(err)
		}
		return tj
	}
	if tj := restTopic(); tj.Partitions != 2 || tj.Configs["retention.ms"] != "3600000" {
		t.Fatalf("REST after create: %+v", tj)
	}
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kmsg.StringPtr("65536")}}
	if r, err := adm.AlterTopicConfigs(ctx, alter, "orders"); err != nil || r[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, r)
	}
	if r, err := adm.UpdatePartitions(ctx, 4, "orders"); err != nil || r["orders"].Err != nil {
		t.Fatalf("add partitions: %v %+v", err, r)
	}
	if tj := restTopic(); tj.Partitions != 4 || tj.Configs["max.message.bytes"] != "65536" {
		t.Fatalf("REST after alter: %+v", tj)
	}
	// A change made over REST is what Kafka describes.
	h.must(t, "PATCH", base+"/api/v1/topics/orders/config", `{"retention.ms":"7200000"}`, 200)
	rcs, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("orders", nil)
	if v := configValue(rc, "retention.ms"); v != "7200000" {
		t.Fatalf("retention.ms described as %q", v)
	}

	// A bad key fails SASL; a read key cannot create; a scoped key sees
	// only its topics.
	if _, err := kafkaAdmin(t, c.KafkaAdvertised, ca, "ops", "sh_wrong").ListTopics(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("bad key: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	r, err := kafkaAdmin(t, c.KafkaAdvertised, ca, "reader", tokRead).CreateTopic(ctx, 1, -1, nil, "nope")
	if err == nil {
		err = r.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("read key creates: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	td, err := kafkaAdmin(t, c.KafkaAdvertised, ca, "scoped", tokScoped).ListTopics(ctx)
	if err != nil || strings.Join(td.Names(), ",") != "orders" {
		t.Fatalf("scoped key lists %v (%v), want only orders", td.Names(), err)
	}

	if d, err := adm.DeleteTopics(ctx, "orders"); err != nil || d["orders"].Err != nil {
		t.Fatalf("delete: %v %+v", err, d)
	}
	h.must(t, "GET", base+"/api/v1/topics/orders", "", 404)

	// librdkafka (kcat) over SASL_SSL: a good key lists the topics, a bad
	// one fails.
	kcat := func(pass string) (string, error) {
		out, err := exec.Command(mustKcat(t), "-L", "-J", "-m", "5", "-b", c.KafkaAdvertised,
			"-X", "security.protocol=sasl_ssl", "-X", "ssl.ca.location="+files.CA,
			"-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=ops", "-X", "sasl.password="+pass).CombinedOutput()
		return string(out), err
	}
	if out, err := kcat(tokAdmin); err != nil || !strings.Contains(out, `"payments"`) {
		t.Fatalf("kcat with a good key: %v\n%s", err, out)
	}
	if out, err := kcat("sh_wrong"); err == nil {
		t.Fatalf("kcat with a bad key succeeded:\n%s", out)
	}
}

func mustKcat(t *testing.T) string {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat; .ci/run installs it)")
	}
	return kcat
}

func configValue(rc kadm.ResourceConfig, key string) string {
	for _, c := range rc.Configs {
		if c.Key == key {
			return c.MaybeValue()
		}
	}
	return ""
}

// kcatMetadata is the part of `kcat -L -J` this test reads.
type kcatMetadata struct {
	Brokers []struct {
		ID   int32  `json:"id"`
		Name string `json:"name"`
	} `json:"brokers"`
	Topics []struct {
		Topic      string `json:"topic"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Leader    int32 `json:"leader"`
		} `json:"partitions"`
	} `json:"topics"`
}

// TestKcatListsThreeBrokers: `kcat -L` against a three-agent cluster lists
// three brokers with small, distinct IDs and a live leader for every
// partition, through any agent.
func TestKcatListsThreeBrokers(t *testing.T) {
	kcat := mustKcat(t)
	dir := t.TempDir()
	ids := []string{"k1", "k2", "k3"}
	gossip := map[string]int{}
	for _, id := range ids {
		gossip[id] = freePort(t)
	}
	var agents []*agentCmd
	for _, id := range ids {
		c := testConfig(t, filepath.Join(dir, id))
		var join []string
		for _, o := range ids {
			if o != id {
				join = append(join, "127.0.0.1:"+strconv.Itoa(gossip[o]))
			}
		}
		c.NodeID, c.GossipPort, c.BootstrapExpect, c.Join = id, gossip[id], 3, strings.Join(join, ",")
		c.ObjectStoreDir = filepath.Join(dir, "objects")
		withKafka(t, c)
		a, err := startAgent(context.Background(), c)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		t.Cleanup(func() { _ = a.Close(context.Background()) })
		agents = append(agents, c)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(agents[0].HTTPPort)
	waitFor(t, 60*time.Second, "topic created on the three-agent cluster", func() bool {
		code, err := tryCall("POST", base+"/api/v1/topics", map[string]any{"name": "orders", "partitions": 6}, nil)
		return err == nil && (code == 201 || code == 409)
	})
	list := func(c *agentCmd) (kcatMetadata, error) {
		var md kcatMetadata
		out, err := exec.Command(kcat, "-L", "-J", "-b", c.KafkaAdvertised, "-m", "10").Output()
		if err != nil {
			return md, err
		}
		return md, json.Unmarshal(out, &md)
	}
	var first kcatMetadata
	for i, c := range agents {
		waitFor(t, 60*time.Second, "kcat -L lists 3 brokers and every leader via "+ids[i], func() bool {
			md, err := list(c)
			if err != nil || len(md.Brokers) != 3 {
				return false
			}
			seen := map[int32]bool{}
			for _, b := range md.Brokers {
				if b.ID < 1 || b.ID > 3 || seen[b.ID] {
					t.Fatalf("broker IDs %+v: want 1, 2, 3", md.Brokers)
				}
				seen[b.ID] = true
			}
			for _, tp := range md.Topics {
				if tp.Topic != "orders" {
					continue
				}
				for _, p := range tp.Partitions {
					if !seen[p.Leader] {
						return false
					}
				}
				if len(tp.Partitions) != 6 {
					return false
				}
				if i == 0 {
					first = md
				}
				return true
			}
			return false
		})
		md, _ := list(c)
		for j, b := range md.Brokers {
			if b != first.Brokers[j] {
				t.Fatalf("agent %s lists brokers %+v, agent %s listed %+v", ids[i], md.Brokers, ids[0], first.Brokers)
			}
		}
	}
}
