package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	pb "github.com/streamhouse/streamhouse/transport/gen/streamhouse/v1"
	"github.com/streamhouse/streamhouse/transport/internal/grpcbuf"
)

// Defaults of the client options.
const (
	DefaultMetadataRefresh = 30 * time.Second
	// metadataTimeout bounds one GetMetadata of a refresh.
	metadataTimeout = 10 * time.Second
)

// Option configures Dial.
type Option func(*options)

type options struct {
	dial    []grpc.DialOption
	logger  *slog.Logger
	refresh time.Duration
	tls     *tls.Config
	caFile  string
	token   string
}

// WithTLS connects over TLS with cfg (nil: verify the agents' certificates
// against the system roots). An empty cfg.ServerName is filled with the
// host of each agent's address, so the agents' certificates must name the
// addresses they advertise.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg.Clone()
	}
}

// WithTLSCAFile connects over TLS and verifies the agents' certificates
// against the CA certificates (PEM) in path instead of the system roots.
// Dial fails when the file cannot be read.
func WithTLSCAFile(path string) Option {
	return func(o *options) { o.caFile = path }
}

// WithToken sends an API key ("Authorization: Bearer <token>" metadata) on
// every call. Use it with WithTLS: over plaintext the token can be read
// off the network.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// tokenCreds is the per-RPC credential of WithToken.
type tokenCreds struct{ header string }

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": t.header}, nil
}

// RequireTransportSecurity is false so that tokens also work against
// plaintext agents (tests, loopback); WithTLS is the caller's choice.
func (tokenCreds) RequireTransportSecurity() bool { return false }

// WithDialOptions adds gRPC dial options to every connection the client
// opens (interceptors, message size limits...). Connections are plaintext
// unless WithTLS/WithTLSCAFile (or a credentials option here) is given.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// WithLogger sets the logger (component=client); the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMetadataRefresh sets how often the metadata is refreshed in the
// background (default 30 s); 0 or less disables the periodic refresh
// (on-demand refreshes still happen).
func WithMetadataRefresh(d time.Duration) Option {
	return func(o *options) { o.refresh = d }
}

// Client is a connection to a StreamHouse cluster. It is safe for
// concurrent use. Close it when done.
type Client struct {
	opts      options
	log       *slog.Logger
	bootstrap []string

	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn // by address: one per agent
	preferred string                      // address of the last agent that answered
	coordAddr string                      // the group coordinator's address, once told (group_rpc.go)
	meta      metaState
	closed    bool

	refreshMu   sync.Mutex // serialises metadata refreshes
	lastRefresh time.Time

	bg     context.Context // canceled by Close: ends the background refresh
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// metaState is the cached cluster metadata.
type metaState struct {
	nodeAddr   map[string]string // node id → advertised gRPC address
	topics     map[string]*topicMeta
	raftLeader string
}

type topicMeta struct {
	name    string
	id      uint64
	leaders []string // node id per partition ("" = none)
}

// Dial connects to the cluster through the bootstrap addresses (gRPC
// host:port of one or more agents): it fetches the metadata from the first
// agent that answers and starts the periodic refresh. ctx bounds only the
// initial metadata call.
func Dial(ctx context.Context, bootstrap []string, opts ...Option) (*Client, error) {
	if len(bootstrap) == 0 {
		return nil, errors.New("client: no bootstrap address")
	}
	o := options{refresh: DefaultMetadataRefresh}
	for _, opt := range opts {
		opt(&o)
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("client: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("client: TLS CA file %s holds no PEM certificate", o.caFile)
		}
		if o.tls == nil {
			o.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls.RootCAs = pool
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		opts: o, log: logger.With("component", "client"), bootstrap: append([]string(nil), bootstrap...),
		conns: map[string]*grpc.ClientConn{},
		meta:  metaState{nodeAddr: map[string]string{}, topics: map[string]*topicMeta{}},
	}
	c.bg, c.cancel = context.WithCancel(context.Background())
	if _, err := c.refresh(ctx, time.Time{}); err != nil {
		_ = c.Close()
		return nil, err
	}
	if o.refresh > 0 {
		c.wg.Add(1)
		go c.refreshLoop(o.refresh)
	}
	return c, nil
}

// Close closes every connection and stops the background refresh. It is
// idempotent. Producers and consumers of the client must be closed first.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	conns := c.conns
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	c.wg.Wait()
	var err error
	for _, cc := range conns {
		err = errors.Join(err, cc.Close())
	}
	return err
}

func (c *Client) refreshLoop(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.bg.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.bg, metadataTimeout)
			if _, err := c.refresh(ctx, time.Time{}); err != nil {
				c.log.Debug("metadata refresh failed", "err", err)
			}
			cancel()
		}
	}
}

// conn returns the connection to addr, opening it (lazily: no I/O) if
// needed.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if c.opts.tls != nil {
		creds = credentials.NewTLS(c.opts.tls)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Buffers that are not cleared, in classes that fit a produce
		// request (transport/GRPC.md, "Buffers").
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpcbuf.Codec{})),
		experimental.WithBufferPool(grpcbuf.Default),
	}
	if c.opts.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{header: "Bearer " + c.opts.token}))
	}
	opts = append(opts, c.opts.dial...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: connect to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// candidates lists agent addresses to try, best first: the agent that
// answered last, the Raft leader, the other known agents, then the
// bootstrap addresses. No duplicates.
func (c *Client) candidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(c.preferred)
	add(c.meta.nodeAddr[c.meta.raftLeader])
	for _, a := range c.meta.nodeAddr {
		add(a)
	}
	for _, a := range c.bootstrap {
		add(a)
	}
	return out
}

// leaderAddr returns the address of the agent leading the partition, or ""
// when unknown.
func (c *Client) leaderAddr(topic string, partition int32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.meta.topics[topic]
	if t == nil || partition < 0 || int(partition) >= len(t.leaders) {
		return ""
	}
	return c.meta.nodeAddr[t.leaders[partition]]
}

// leaderConn returns a connection to the partition's leader; when the
// leader or its address is unknown (or attempt asks to rotate), another
// agent: any agent forwards writes to the leader.
func (c *Client) leaderConn(topic string, partition int32, attempt int) (*grpc.ClientConn, string, error) {
	addr := c.leaderAddr(topic, partition)
	if addr == "" || attempt%2 == 1 {
		cands := c.candidates()
		if addr != "" && len(cands) > 1 {
			// Rotate through the other agents on odd attempts.
			others := cands[:0:0]
			for _, a := range cands {
				if a != addr {
					others = append(others, a)
				}
			}
			addr = others[(attempt/2)%len(others)]
		} else if addr == "" {
			addr = cands[(attempt/2)%len(cands)]
		}
	}
	cc, err := c.conn(addr)
	return cc, addr, err
}

// answered remembers addr as the agent to ask first next time.
func (c *Client) answered(addr string) {
	c.mu.Lock()
	c.preferred = addr
	c.mu.Unlock()
}

// call runs fn against one agent after another until one answers with
// anything but UNAVAILABLE (UNAVAILABLE means the request was not applied,
// so trying the next agent is safe). It returns the last error, wrapped.
func (c *Client) call(ctx context.Context, op string, fn func(context.Context, pb.StreamHouseClient) error) error {
	var err error
	for _, addr := range c.candidates() {
		var cc *grpc.ClientConn
		if cc, err = c.conn(addr); err != nil {
			return err
		}
		err = fn(ctx, pb.NewStreamHouseClient(cc))
		if err == nil {
			c.answered(addr)
			return nil
		}
		if Code(err) != codes.Unavailable || ctx.Err() != nil {
			break
		}
		c.log.Debug("agent unavailable, trying the next one", "op", op, "addr", addr, "err", err)
	}
	return wrapErr(op, err)
}

// refresh fetches the metadata of every topic (the whole cluster view) and
// replaces the cache. With a non-zero staleBefore, it does nothing when a
// refresh started after staleBefore (the cache is already newer than the
// failure that asked for it): concurrent failures share one refresh.
func (c *Client) refresh(ctx context.Context, staleBefore time.Time) (Metadata, error) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if !staleBefore.IsZero() && c.lastRefresh.After(staleBefore) {
		return Metadata{}, nil
	}
	start := time.Now()
	md, err := c.getMetadata(ctx, nil)
	if err != nil {
		return Metadata{}, err
	}
	c.lastRefresh = start
	return md, nil
}

// refreshSoon is the on-demand refresh after an UNAVAILABLE or "not leader"
// answer to a request sent at sent (errors are only logged).
func (c *Client) refreshSoon(ctx context.Context, sent time.Time) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	if _, err := c.refresh(ctx, sent); err != nil {
		c.log.Debug("on-demand metadata refresh failed", "err", err)
	}
}

// getMetadata calls GetMetadata and merges the answer into the cache (all
// topics replace the cache; named topics are updated in place).
func (c *Client) getMetadata(ctx context.Context, topics []string) (Metadata, error) {
	var resp *pb.GetMetadataResponse
	err := c.call(ctx, "GetMetadata", func(ctx context.Context, sc pb.StreamHouseClient) error {
		var err error
		resp, err = sc.GetMetadata(ctx, &pb.GetMetadataRequest{Topics: topics})
		return err
	})
	if err != nil {
		return Metadata{}, err
	}
	md := Metadata{NodeID: resp.GetNodeId(), RaftLeader: resp.GetRaftLeader()}
	for _, a := range resp.GetAgents() {
		md.Agents = append(md.Agents, Agent{NodeID: a.GetNodeId(), GRPCAddress: a.GetGrpcAddress(), HTTPAddress: a.GetHttpAddress(),
			RaftLeader: a.GetRaftLeader(), GossipState: a.GetGossipState()})
	}
	for _, t := range resp.GetTopics() {
		tm := TopicMetadata{Name: t.GetName(), ID: t.GetId()}
		for _, p := range t.GetPartitions() {
			tm.Partitions = append(tm.Partitions, PartitionMetadata{Partition: p.GetPartition(), Leader: p.GetLeader(), LeaderEpoch: p.GetLeaderEpoch()})
		}
		md.Topics = append(md.Topics, tm)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(md.Agents) > 0 {
		c.meta.nodeAddr = map[string]string{}
		for _, a := range md.Agents {
			if a.GRPCAddress != "" && a.GossipState != "dead" && a.GossipState != "left" {
				c.meta.nodeAddr[a.NodeID] = a.GRPCAddress
			}
		}
	}
	c.meta.raftLeader = md.RaftLeader
	if len(topics) == 0 {
		c.meta.topics = map[string]*topicMeta{}
	}
	for _, t := range md.Topics {
		tm := &topicMeta{name: t.Name, id: t.ID, leaders: make([]string, len(t.Partitions))}
		for _, p := range t.Partitions {
			if p.Partition >= 0 && int(p.Partition) < len(tm.leaders) {
				tm.leaders[p.Partition] = p.Leader
			}
		}
		c.meta.topics[t.Name] = tm
	}
	return md, nil
}

// partitionCount returns the number of partitions of topic, from the cache
// or (when the topic is not cached) from GetMetadata.
func (c *Client) partitionCount(ctx context.Context, topic string) (int32, error) {
	c.mu.Lock()
	t := c.meta.topics[topic]
	c.mu.Unlock()
	if t != nil {
		return int32(len(t.leaders)), nil
	}
	if _, err := c.getMetadata(ctx, []string{topic}); err != nil {
		return 0, err
	}
	c.mu.Lock()
	t = c.meta.topics[topic]
	c.mu.Unlock()
	if t == nil {
		return 0, newError("GetMetadata", codes.NotFound, KindNotFound, "topic not found: %q", topic)
	}
	return int32(len(t.leaders)), nil
}

// forgetTopic drops a topic from the cache (it was deleted, or an agent
// said it does not exist).
func (c *Client) forgetTopic(topic string) {
	c.mu.Lock()
	delete(c.meta.topics, topic)
	c.mu.Unlock()
}
