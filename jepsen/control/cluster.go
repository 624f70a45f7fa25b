// Package control runs a StreamHouse cluster for the jepsen harness: agent
// processes (each in its own network namespace, or on loopback behind a
// fault proxy), a MinIO server and a PostgreSQL server, and the fault
// primitives the nemeses use (kill, pause, wipe, link cuts, S3 and
// Postgres outages).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/proc"
	"github.com/streamhouse/streamhouse/pgsync/pgtest"
	"github.com/streamhouse/streamhouse/transport"
)

// Network modes.
const (
	ModeAuto  = "auto"
	ModeNetns = "netns"
	ModeProxy = "proxy"
)

// Config configures a cluster.
type Config struct {
	Agents   int    // 3 or 5
	Mode     string // ModeAuto, ModeNetns or ModeProxy
	Dir      string // run directory: logs, agent data
	AgentBin string
	MinIOBin string
	Lossy    bool     // STREAMHOUSE_UNSAFE_WAL_FS=lossy on every agent
	Env      []string // extra agent environment (overrides)
	// SmallDisk > 0: every agent's DATA_DIR is a tmpfs of this many bytes
	// (disk.go), for the disk-full fault class.
	SmallDisk int64
	Log       *slog.Logger
}

// Agent is one agent slot.
type Agent struct {
	Index   int
	ID      string
	DataDir string
	LogPath string
	env     []string

	mu     sync.Mutex
	p      *proc.Proc // nil while not launched (or killed)
	paused bool
}

// Cluster is a running cluster.
type Cluster struct {
	cfg    Config
	net    network
	Ports  Ports
	Agents []*Agent
	MinIO  *MinIO
	PG     *pgtest.Server
	PGURL  string // as the agents dial it
	pgFwd  *forwarder
	log    *slog.Logger
	http   *http.Client
	// mounted lists the small-disk mount points (disk.go).
	mounted []string
}

// Start brings up the network, MinIO, Postgres and the agents, and waits
// until every agent is ready and the Raft group has all of them as voters
// (up to 5).
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c, err := start(ctx, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// start runs the steps of Start in order; on error c holds what is up so
// far, for Close.
func start(ctx context.Context, cfg Config) (*Cluster, error) {
	c := &Cluster{cfg: cfg, log: cfg.Log, http: &http.Client{Timeout: 3 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}}
	if err := c.setupNetwork(); err != nil {
		return c, err
	}
	if err := c.startMinIO(); err != nil {
		return c, err
	}
	if err := c.startPostgres(ctx); err != nil {
		return c, err
	}
	c.addAgents()
	if cfg.SmallDisk > 0 {
		if err := c.mountSmallDisks(cfg.SmallDisk); err != nil {
			return c, err
		}
	}
	for _, a := range c.Agents {
		if err := c.Launch(a.Index); err != nil {
			return c, err
		}
	}
	return c, c.waitFormed(ctx)
}

// setupNetwork picks the network mode (namespaces when available under
// ModeAuto) and its agent ports, and sets it up.
func (c *Cluster) setupNetwork() error {
	mode := c.cfg.Mode
	if mode == ModeAuto || mode == "" {
		if ok, why := NetnsAvailable(); ok {
			mode = ModeNetns
		} else {
			c.log.Warn("network namespaces unavailable; using the loopback fault proxy", "reason", why)
			mode = ModeProxy
		}
	}
	switch mode {
	case ModeNetns:
		c.net = &netnsNet{}
		c.Ports = Ports{HTTP: 8080, GRPC: 9090, Peer: 9093, Gossip: 7946, Kafka: 9092}
	case ModeProxy:
		c.net = &proxyNet{}
		c.Ports = Ports{HTTP: 18080, GRPC: 19090, Peer: 19093, Gossip: 17946, Kafka: 19092}
	default:
		return fmt.Errorf("unknown network mode %q", mode)
	}
	if err := c.net.Setup(c.cfg.Agents, c.Ports); err != nil {
		return fmt.Errorf("network (%s): %w", mode, err)
	}
	return nil
}

// startMinIO starts MinIO on the service address with the bucket "jepsen".
func (c *Cluster) startMinIO() (err error) {
	c.MinIO, err = StartMinIO(c.cfg.MinIOBin, c.net.ServiceIP(), filepath.Join(c.cfg.Dir, "minio"), filepath.Join(c.cfg.Dir, "minio.log"), "jepsen")
	if err != nil {
		return fmt.Errorf("minio: %w", err)
	}
	return nil
}

// startPostgres starts PostgreSQL on loopback with a "jepsen" database and,
// when the agents live in other namespaces, a forwarder on the service
// address; PGURL is the URL as the agents dial it.
func (c *Cluster) startPostgres(ctx context.Context) (err error) {
	// PostgreSQL runs as the "postgres" OS user under root, so its
	// directory must be reachable by it: a fresh one under the temp dir.
	if c.PG, err = pgtest.StartTemp("jepsen-pg-"); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	dbURL, err := c.PG.CreateDatabase(ctx, "jepsen")
	if err != nil {
		return err
	}
	c.PGURL = dbURL
	if svc := c.net.ServiceIP(); svc != "127.0.0.1" {
		pgAddr := "127.0.0.1:" + strconv.Itoa(c.PG.Port)
		if c.pgFwd, err = startForwarder(net.JoinHostPort(svc, "0"), pgAddr); err != nil {
			return err
		}
		c.PGURL = strings.Replace(dbURL, pgAddr, c.pgFwd.Addr(), 1)
	}
	return nil
}

// addAgents creates the agent slots with their environment.
func (c *Cluster) addAgents() {
	var join []string
	for i := 0; i < c.cfg.Agents; i++ {
		join = append(join, c.GossipAddr(i))
	}
	for i := 0; i < c.cfg.Agents; i++ {
		a := &Agent{Index: i, ID: fmt.Sprintf("n%d", i+1), DataDir: filepath.Join(c.cfg.Dir, fmt.Sprintf("n%d", i+1), "data"),
			LogPath: filepath.Join(c.cfg.Dir, fmt.Sprintf("n%d.log", i+1))}
		a.env = c.agentEnv(a, join)
		c.Agents = append(c.Agents, a)
	}
}

// agentEnv is agent a's environment: its addresses and data dir, the
// cluster's timings, MinIO and Postgres, then Config.Env.
func (c *Cluster) agentEnv(a *Agent, join []string) []string {
	i := a.Index
	env := []string{
		"NODE_ID=" + a.ID, "BIND_ADDR=" + c.net.BindIP(i), "ADVERTISE_ADDR=" + c.net.AdvertiseIP(i),
		"HTTP_PORT=" + strconv.Itoa(c.Ports.HTTP), "GRPC_PORT=" + strconv.Itoa(c.Ports.GRPC),
		"PEER_PORT=" + strconv.Itoa(c.Ports.Peer), "GOSSIP_PORT=" + strconv.Itoa(c.Ports.Gossip),
		"KAFKA_PORT=" + strconv.Itoa(c.Ports.Kafka), "KAFKA_ADVERTISED_ADDR=" + c.KafkaAddr(i),
		"DATA_DIR=" + a.DataDir, "BOOTSTRAP_EXPECT=" + strconv.Itoa(c.cfg.Agents), "JOIN=" + strings.Join(join, ","),
		"PARTITION_FAILOVER_TIMEOUT=2s", "DEAD_AGENT_TIMEOUT=20s", "SEGMENT_MAX_AGE_MS=250",
		"CHECKPOINT_INTERVAL_MS=1000", "LOG_LEVEL=info",
		"S3_ENDPOINT=" + c.MinIO.Endpoint(), "S3_BUCKET=" + c.MinIO.Bucket, "S3_PATH_STYLE=true", "S3_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + c.MinIO.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.MinIO.SecretKey, "S3_TIMEOUT_MS=3000",
		"DATABASE_URL=" + c.PGURL, clockEnv(a.DataDir),
	}
	if c.cfg.Lossy {
		env = append(env, "STREAMHOUSE_UNSAFE_WAL_FS=lossy")
	}
	return append(env, c.cfg.Env...)
}

// waitFormed waits (up to 60 s) until every agent is ready and the Raft
// group has all of them as voters (up to 5) and a leader.
func (c *Cluster) waitFormed(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, a := range c.Agents {
		if err := c.WaitReady(wctx, a.Index); err != nil {
			return fmt.Errorf("%s not ready: %w (log %s)", a.ID, err, a.LogPath)
		}
	}
	want := min(c.cfg.Agents, 5)
	err := proc.Poll(wctx, 200*time.Millisecond, func(context.Context) error {
		st, err := c.Status(0)
		if err == nil && (len(st.Voters) != want || st.Leader == "") {
			err = fmt.Errorf("%+v", st)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("raft group never reached %d voters: %w", want, err)
	}
	return nil
}

// Mode is the network mode in use.
func (c *Cluster) Mode() string { return c.net.Name() }

// ServiceIP is where the agents reach MinIO and Postgres (and any service
// the harness runs for them).
func (c *Cluster) ServiceIP() string { return c.net.ServiceIP() }

// HTTPBase is agent i's REST base URL.
func (c *Cluster) HTTPBase(i int) string {
	return "http://" + net.JoinHostPort(c.net.ClientIP(i), strconv.Itoa(c.Ports.HTTP))
}

// GRPCAddr is agent i's gRPC address.
func (c *Cluster) GRPCAddr(i int) string {
	return net.JoinHostPort(c.net.ClientIP(i), strconv.Itoa(c.Ports.GRPC))
}

// KafkaAddr is agent i's Kafka listener address.
func (c *Cluster) KafkaAddr(i int) string {
	return net.JoinHostPort(c.net.ClientIP(i), strconv.Itoa(c.Ports.Kafka))
}

// KafkaAddrs lists every agent's Kafka listener address.
func (c *Cluster) KafkaAddrs() []string {
	var out []string
	for i := range c.Agents {
		out = append(out, c.KafkaAddr(i))
	}
	return out
}

// GossipAddr is agent i's advertised gossip address (for JOIN).
func (c *Cluster) GossipAddr(i int) string {
	return net.JoinHostPort(c.net.AdvertiseIP(i), strconv.Itoa(c.Ports.Gossip))
}

// GRPCAddrs lists every agent's gRPC address.
func (c *Cluster) GRPCAddrs() []string {
	var out []string
	for i := range c.Agents {
		out = append(out, c.GRPCAddr(i))
	}
	return out
}

// SetEnv adds (or overrides) environment for agent i's next launches.
func (c *Cluster) SetEnv(i int, kv ...string) {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	a.env = append(a.env, kv...)
}

// Launch starts agent i's process (it must not be running).
func (c *Cluster) Launch(i int, args ...string) error {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.p != nil {
		return fmt.Errorf("%s already running", a.ID)
	}
	if len(args) == 0 {
		args = []string{"agent"}
	}
	cmd := c.net.Command(i, c.cfg.AgentBin, args...)
	cmd.Env = append(os.Environ(), a.env...)
	p, err := proc.Start(cmd, a.LogPath, "jepsen: starting "+a.ID)
	if err != nil {
		return err
	}
	a.p, a.paused = p, false
	return nil
}

// RunRestore runs `streamhouse restore --output json` as agent i (empty
// data dir) and returns its JSON report.
func (c *Cluster) RunRestore(ctx context.Context, i int) ([]byte, error) {
	a := c.Agents[i]
	cmd := c.net.Command(i, c.cfg.AgentBin, "restore", "--output", "json")
	cmd.Env = append(os.Environ(), a.env...)
	logf, err := proc.OpenLog(a.LogPath, "jepsen: streamhouse restore")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("streamhouse restore: %w (log %s)", err, a.LogPath)
	}
	return out, nil
}

// Running reports whether agent i's process exists (running or paused).
func (c *Cluster) Running(i int) bool {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p != nil && !a.p.Exited()
}

// Exited reports agents whose process ended without being killed by us.
func (c *Cluster) Exited() []string {
	var out []string
	for _, a := range c.Agents {
		a.mu.Lock()
		if a.p != nil && a.p.Exited() {
			out = append(out, a.ID)
		}
		a.mu.Unlock()
	}
	return out
}

// Kill SIGKILLs agent i and waits for it to exit.
func (c *Cluster) Kill(i int) {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.p == nil {
		return
	}
	a.p.Kill()
	a.p, a.paused = nil, false
}

// Pause SIGSTOPs agent i.
func (c *Cluster) Pause(i int) {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.p != nil && !a.paused {
		_ = a.p.Signal(syscall.SIGSTOP)
		a.paused = true
	}
}

// Resume SIGCONTs agent i.
func (c *Cluster) Resume(i int) {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.p != nil && a.paused {
		_ = a.p.Signal(syscall.SIGCONT)
		a.paused = false
	}
}

// Paused reports whether agent i is stopped.
func (c *Cluster) Paused(i int) bool {
	a := c.Agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paused
}

// Wipe deletes agent i's data dir (the agent must be killed).
func (c *Cluster) Wipe(i int) error {
	if c.Running(i) {
		return fmt.Errorf("%s is running", c.Agents[i].ID)
	}
	if len(c.mounted) > 0 {
		return removeContents(c.Agents[i].DataDir)
	}
	return os.RemoveAll(c.Agents[i].DataDir)
}

// SetCuts replaces the link faults.
func (c *Cluster) SetCuts(cuts []Cut) error { return c.net.SetCuts(cuts) }

// WaitReady waits until agent i answers /ready with 200.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	return proc.Poll(ctx, 100*time.Millisecond, proc.HTTPOK(&http.Client{Timeout: time.Second}, c.HTTPBase(i)+"/ready"))
}

// Ready reports whether agent i answers /ready with 200 now.
func (c *Cluster) Ready(i int) bool {
	resp, err := c.http.Get(c.HTTPBase(i) + "/ready")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

// GetJSON GETs path on agent i and decodes the answer.
func (c *Cluster) GetJSON(ctx context.Context, i int, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.HTTPBase(i)+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return &HTTPError{Code: resp.StatusCode, Body: string(b)}
	}
	return json.Unmarshal(b, out)
}

// HTTPError is a non-200 answer.
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// Status is agent i's GET /api/v1/cluster.
func (c *Cluster) Status(i int) (transport.ClusterStatus, error) {
	var st transport.ClusterStatus
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := c.GetJSON(ctx, i, "/api/v1/cluster", &st)
	return st, err
}

// Index returns the slot of agent id ("n2" -> 1), or -1.
func (c *Cluster) Index(id string) int {
	for _, a := range c.Agents {
		if a.ID == id {
			return a.Index
		}
	}
	return -1
}

// RaftLeader asks the live agents who leads Raft; "" when none knows.
func (c *Cluster) RaftLeader() string {
	for i := range c.Agents {
		if !c.Running(i) || c.Paused(i) {
			continue
		}
		if st, err := c.Status(i); err == nil && st.Leader != "" {
			return st.Leader
		}
	}
	return ""
}

// Close stops everything and removes the network. Agent data and logs stay
// in the run directory.
func (c *Cluster) Close() {
	for i := range c.Agents {
		c.Resume(i)
		c.Kill(i)
	}
	c.unmountSmallDisks()
	if c.net != nil {
		_ = c.net.SetCuts(nil)
	}
	if c.MinIO != nil {
		c.MinIO.Close()
	}
	if c.pgFwd != nil {
		c.pgFwd.Close()
	}
	if c.PG != nil {
		// Keep its log with the run.
		if b, err := os.ReadFile(c.PG.LogPath); err == nil {
			_ = os.WriteFile(filepath.Join(c.cfg.Dir, "postgres.log"), b, 0o644)
		}
		if err := c.PG.Close(); err != nil {
			c.log.Warn("closing postgres", "err", err)
		}
	}
	if c.net != nil {
		if err := c.net.Close(); err != nil {
			c.log.Warn("network teardown", "err", err)
		}
	}
}

// ErrNotRunning is returned for operations on a stopped agent.
var ErrNotRunning = errors.New("agent not running")
