package kafka

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/transporttest"
)

// keyed is an env with API keys: admin (every topic), reader (read, every
// topic) and scoped (write, topics "orders*").
type keyed struct {
	*env
	auth   *transport.Authenticator
	tokens map[string]string
}

func newKeyedEnv(t *testing.T, mods ...func(*Config)) *keyed {
	k := &keyed{tokens: map[string]string{}}
	var keys []transport.APIKey
	for _, d := range []struct {
		name   string
		scope  transport.Scope
		topics []string
	}{{"admin", transport.ScopeAdmin, nil}, {"reader", transport.ScopeRead, nil}, {"scoped", transport.ScopeWrite, []string{"orders*"}}} {
		tok, key, err := transport.NewAPIKey(d.name, d.scope, d.topics)
		if err != nil {
			t.Fatal(err)
		}
		k.tokens[d.name] = tok
		keys = append(keys, key)
	}
	k.auth = transport.NewAuthenticator(keys, false)
	k.env = newEnv(t, append([]func(*Config){withAdmin, func(c *Config) { c.Auth = k.auth }}, mods...)...)
	return k
}

func (k *keyed) as(t *testing.T, user, password string, opts ...kgo.Opt) *kadm.Client {
	return kadm.NewClient(k.client(t, append(opts, kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism()))...))
}

func TestSASLPlainWithAPIKeys(t *testing.T) {
	k := newKeyedEnv(t)
	k.agent.addTopic("orders", 1)
	ctx := ctxT(t)
	if _, err := k.as(t, "admin", k.tokens["admin"]).Metadata(ctx); err != nil {
		t.Fatalf("good key: %v", err)
	}
	_, err := k.as(t, "admin", "sh_not-a-key").Metadata(ctx)
	if !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("bad key: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	// Without SASL, only ApiVersions is answered; anything else closes
	// the connection.
	if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, k.client(t)); err != nil {
		t.Fatalf("ApiVersions without SASL: %v", err)
	}
	if resp := rawRequest(t, k.addr, frame(int16(kmsg.Metadata), 1, 1, []byte{0xff, 0xff, 0xff, 0xff})); resp != nil {
		t.Fatalf("Metadata before SASL answered: %x", resp)
	}
	// An unsupported mechanism is refused.
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Mechanism = "SCRAM-SHA-256"
	resp, err := req.RequestWith(ctx, k.client(t))
	if err != nil || resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || resp.SupportedMechanisms[0] != "PLAIN" {
		t.Fatalf("SCRAM handshake: %+v %v", resp, err)
	}
}

func TestAuthorizationByScopeAndTopics(t *testing.T) {
	k := newKeyedEnv(t)
	k.agent.addTopic("orders", 1)
	k.agent.addTopic("orders-eu", 1)
	k.agent.addTopic("payments", 1)
	ctx := ctxT(t)

	// A read key cannot create, delete or alter.
	reader := k.as(t, "reader", k.tokens["reader"])
	cr, err := reader.CreateTopic(ctx, 1, -1, nil, "new")
	if err == nil {
		err = cr.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("read key creates: %v", err)
	}
	dr, err := reader.DeleteTopics(ctx, "orders")
	if err != nil || !errors.Is(dr["orders"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("read key deletes: %v %+v", err, dr)
	}
	ar, err := reader.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1")}}, "orders")
	if err != nil || !errors.Is(ar[0].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("read key alters: %v %+v", err, ar)
	}
	if len(k.agent.topics) != 3 {
		t.Fatalf("topics changed: %v", k.agent.topics)
	}

	// A key scoped to orders* sees only those topics.
	scoped := k.as(t, "scoped", k.tokens["scoped"])
	md, err := scoped.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := md.Topics.Names(); len(names) != 2 || names[0] != "orders" || names[1] != "orders-eu" {
		t.Fatalf("scoped key lists %v", names)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	for _, n := range []string{"payments", "nope"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		mreq.Topics = append(mreq.Topics, rt)
	}
	mresp, err := mreq.RequestWith(ctx, k.client(t, kgo.SASL(plain.Auth{User: "scoped", Pass: k.tokens["scoped"]}.AsMechanism())))
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range mresp.Topics {
		if mt.ErrorCode != kerr.TopicAuthorizationFailed.Code {
			t.Fatalf("%s: code %d, want TOPIC_AUTHORIZATION_FAILED whether it exists or not", *mt.Topic, mt.ErrorCode)
		}
	}
	// Broker configs need only read; altering them needs admin.
	if _, err := reader.DescribeBrokerConfigs(ctx, 7); err != nil {
		t.Fatal(err)
	}
	br, err := reader.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "num.partitions", Value: kmsg.StringPtr("3")}}, 7)
	if err != nil || !errors.Is(br[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("read key alters broker configs: %v %+v", err, br)
	}
}

func TestKeyFileReloadAppliesToOpenConnections(t *testing.T) {
	k := newKeyedEnv(t)
	k.agent.addTopic("orders", 1)
	ctx := ctxT(t)
	adm := k.as(t, "admin", k.tokens["admin"])
	if r, err := adm.CreateTopic(ctx, 1, -1, nil, "one"); err != nil || r.Err != nil {
		t.Fatalf("%v %+v", err, r)
	}
	// Revoke every key but reader: the open connection loses its rights.
	var keep []transport.APIKey
	for _, key := range k.auth.Keys() {
		if key.Name == "reader" {
			keep = append(keep, key)
		}
	}
	k.auth.SetKeys(keep)
	r, err := adm.CreateTopic(ctx, 1, -1, nil, "two")
	if err == nil {
		err = r.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("revoked key creates: %v", err)
	}
}

func TestTLSListener(t *testing.T) {
	ca := transporttest.NewCA(t, "kafka-test")
	cert := ca.Issue(t, "agent")
	e := newEnv(t, func(c *Config) {
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}
	})
	e.agent.addTopic("t", 1)
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	cl := e.client(t, kgo.Dialer(dialer.DialContext))
	md, err := kadm.NewClient(cl).Metadata(ctxT(t), "t")
	if err != nil || md.Topics["t"].Err != nil {
		t.Fatalf("over TLS: %v %+v", err, md)
	}
	// A plaintext client gets nothing.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(frame(int16(kmsg.ApiVersions), 0, 1, nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, _ := c.Read(buf); n >= 4 && buf[0] == 0 && buf[1] == 0 {
		t.Fatalf("plaintext request answered: %x", buf[:n])
	}
}

// TestSASLHandshakeV0RawToken: after a v0 SaslHandshake the client sends
// the bare PLAIN token; success is an empty frame, after which requests
// are served; a bad token closes the connection.
func TestSASLHandshakeV0RawToken(t *testing.T) {
	k := newKeyedEnv(t)
	handshake := func(c net.Conn, r *bufio.Reader) {
		t.Helper()
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, "PLAIN"
		if _, err := c.Write(frame(int16(kmsg.SASLHandshake), 0, 1, hs.AppendTo(nil))); err != nil {
			t.Fatal(err)
		}
		if resp := readFrameT(t, r); resp == nil || binary.BigEndian.Uint16(resp[4:]) != 0 {
			t.Fatalf("handshake v0: %x", resp)
		}
	}
	raw := func(token string) []byte {
		msg := []byte("\x00admin\x00" + token)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
	}
	c, r := dialT(t, k.addr)
	handshake(c, r)
	if _, err := c.Write(raw(k.tokens["admin"])); err != nil {
		t.Fatal(err)
	}
	if resp := readFrameT(t, r); resp == nil || len(resp) != 0 {
		t.Fatalf("raw token answer %x, want an empty frame", resp)
	}
	if _, err := c.Write(frame(int16(kmsg.Metadata), 1, 2, []byte{0xff, 0xff, 0xff, 0xff})); err != nil {
		t.Fatal(err)
	}
	if resp := readFrameT(t, r); resp == nil || binary.BigEndian.Uint32(resp) != 2 {
		t.Fatalf("Metadata after raw SASL: %x", resp)
	}

	c, r = dialT(t, k.addr)
	handshake(c, r)
	if _, err := c.Write(raw("sh_wrong-token")); err != nil {
		t.Fatal(err)
	}
	if resp := readFrameT(t, r); resp != nil {
		t.Fatalf("bad raw token answered %x, want the connection closed", resp)
	}
}

func dialT(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// readFrameT reads one size-prefixed frame; nil when the connection closed.
func readFrameT(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil
	}
	return buf
}

func TestMutationQuotaThrottlesTopicCreation(t *testing.T) {
	var rates transport.QuotaRates
	rates[transport.QuotaMutations] = 4 // burst: 4 partitions
	q := transport.NewQuotas(rates, nil, nil)
	k := newKeyedEnv(t, func(c *Config) { c.Quotas = q })
	q.SetKeys(k.auth.Keys())
	adm := k.as(t, "admin", k.tokens["admin"])
	ctx := ctxT(t)
	if r, err := adm.CreateTopic(ctx, 4, -1, nil, "first"); err != nil || r.Err != nil {
		t.Fatalf("within the quota: %v %+v", err, r)
	}
	r, err := adm.CreateTopic(ctx, 4, -1, nil, "second")
	if err == nil {
		err = r.Err
	}
	if !errors.Is(err, kerr.ThrottlingQuotaExceeded) {
		t.Fatalf("over the quota: %v, want THROTTLING_QUOTA_EXCEEDED", err)
	}
	if _, ok := k.agent.topics["second"]; ok {
		t.Fatal("throttled topic was created")
	}
}

func TestWithoutAPIKeysSASLAcceptsAnyCredentials(t *testing.T) {
	e := newEnv(t, withAdmin)
	cl := e.client(t, kgo.SASL(plain.Auth{User: "anyone", Pass: "anything"}.AsMechanism()))
	if r, err := kadm.NewClient(cl).CreateTopic(ctxT(t), 1, -1, nil, "t"); err != nil || r.Err != nil {
		t.Fatalf("%v %+v", err, r)
	}
}
