package kafka

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestApiVersionsAdvertisesTheDispatchTable(t *testing.T) {
	e := newEnv(t)
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("error code %d", resp.ErrorCode)
	}
	got := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	if len(got) != len(e.srv.handlers) {
		t.Fatalf("advertised %d APIs, serve %d", len(got), len(e.srv.handlers))
	}
	for key, h := range e.srv.handlers {
		if got[key] != [2]int16{h.minV, h.maxV} {
			t.Errorf("API %s: advertised %v, serve v%d-v%d", kmsg.NameForKey(key), got[key], h.minV, h.maxV)
		}
	}
}

func TestMetadataListsBrokersAndTopics(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("orders", 3)
	adm := kadm.NewClient(e.client(t))
	md, err := adm.Metadata(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster != ClusterID || md.Controller != 7 || len(md.Brokers) != 1 || md.Brokers[0].NodeID != 7 {
		t.Fatalf("cluster %q controller %d brokers %+v", md.Cluster, md.Controller, md.Brokers)
	}
	td, ok := md.Topics["orders"]
	if !ok || td.Err != nil || len(td.Partitions) != 3 {
		t.Fatalf("orders: %+v", td)
	}
	for _, p := range td.Partitions {
		if p.Leader != 7 || p.LeaderEpoch != 3 || p.Err != nil {
			t.Errorf("partition %d: leader %d epoch %d err %v", p.Partition, p.Leader, p.LeaderEpoch, p.Err)
		}
	}
	md, err = adm.Metadata(ctxT(t), "missing")
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Topics["missing"].Err; err != kerr.UnknownTopicOrPartition {
		t.Fatalf("missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

func TestLeaderOnDeadAgentIsLeaderNotAvailable(t *testing.T) {
	e := newEnv(t)
	e.agent.addTopic("t", 1)
	e.agent.leader["t/0"] = "gone"
	md, err := kadm.NewClient(e.client(t)).Metadata(ctxT(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	p := md.Topics["t"].Partitions[0]
	if p.Leader != -1 || p.Err != kerr.LeaderNotAvailable {
		t.Fatalf("leader %d err %v", p.Leader, p.Err)
	}
}

// rawRequest sends one frame and returns the response frame (nil when the
// broker closed the connection instead).
func rawRequest(t *testing.T, addr string, frame []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return buf
}

func frame(key, version int16, corr int32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func TestApiVersionsFromTheFutureGetsV0Answer(t *testing.T) {
	e := newEnv(t)
	resp := rawRequest(t, e.addr, frame(int16(kmsg.ApiVersions), 99, 42, nil))
	if resp == nil || binary.BigEndian.Uint32(resp) != 42 {
		t.Fatalf("response %x", resp)
	}
	v := kmsg.NewPtrApiVersionsResponse()
	v.Version = 0
	if err := v.ReadFrom(resp[4:]); err != nil {
		t.Fatal(err)
	}
	if v.ErrorCode != kerr.UnsupportedVersion.Code || len(v.ApiKeys) != len(e.srv.handlers) {
		t.Fatalf("error %d, %d keys", v.ErrorCode, len(v.ApiKeys))
	}
}

func TestBadFramesCloseTheConnection(t *testing.T) {
	e := newEnv(t)
	huge := binary.BigEndian.AppendUint32(nil, 1<<31-1)
	cases := map[string][]byte{
		"size beyond the limit": huge,
		"unknown API key":       frame(9999, 0, 1, nil),
		"unsupported version":   frame(int16(kmsg.Metadata), 99, 1, nil),
		"truncated body":        frame(int16(kmsg.Metadata), 1, 1, []byte{0, 0, 0, 5}),
	}
	for name, f := range cases {
		if resp := rawRequest(t, e.addr, f); resp != nil {
			t.Errorf("%s: got a response %x, want the connection closed", name, resp)
		}
	}
	// The server still serves.
	if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxT(t), e.client(t)); err != nil {
		t.Fatal(err)
	}
}
