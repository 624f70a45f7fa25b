// Package workload is the jepsen client side: idempotent producers sending
// unique ascending values per partition, assign-based pollers, group
// consumers committing offsets, a leadership sampler and the final read.
// Every operation is recorded in the history. The producers and pollers
// speak gRPC (the Go client) or Kafka (franz-go), one implementation each
// of the sender and reader interfaces (client.go, kafka.go).
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/transport"
	"github.com/streamhouse/streamhouse/transport/client"
)

// Config sizes the workload.
type Config struct {
	Topic          string
	Partitions     int32
	Producers      int
	Rate           float64 // records per second over all producers
	Pollers        int
	GroupConsumers int
	Group          string
	Seed           uint64
	Log            *slog.Logger
	// Client is the client mode of the producers and the assign-based
	// pollers: ClientGRPC (default) or ClientKafka.
	Client string
}

// Workload runs the clients against a cluster.
type Workload struct {
	cfg Config
	c   *control.Cluster
	rec *history.Recorder
	log *slog.Logger

	nextProc atomic.Int64
	values   []atomic.Int64 // last value per partition

	readerResets atomic.Int64

	stop   chan struct{}
	wg     sync.WaitGroup
	acks   atomic.Int64
	lastOK atomic.Int64 // unix nanos of the latest ok send
	mu     sync.Mutex
	paused map[int]bool
}

// New prepares a workload; Start runs it.
func New(cfg Config, c *control.Cluster, rec *history.Recorder) *Workload {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	w := &Workload{cfg: cfg, c: c, rec: rec, log: cfg.Log, values: make([]atomic.Int64, cfg.Partitions), stop: make(chan struct{})}
	return w
}

// Acks is the number of acknowledged sends so far.
func (w *Workload) Acks() int64 { return w.acks.Load() }

// ReaderResets is the number of assign-based readers replaced because
// the cluster refused a position they had reached (out of range).
func (w *Workload) ReaderResets() int64 { return w.readerResets.Load() }

// LastAck is the time of the latest acknowledged send.
func (w *Workload) LastAck() time.Time { return time.Unix(0, w.lastOK.Load()) }

func (w *Workload) proc() int { return int(w.nextProc.Add(1) - 1) }

func (w *Workload) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until Stop; false when stopped.
func (w *Workload) sleep(d time.Duration) bool {
	select {
	case <-w.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func (w *Workload) dial(ctx context.Context) (*client.Client, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cl, err := client.Dial(dctx, w.c.GRPCAddrs(), client.WithMetadataRefresh(2*time.Second))
		cancel()
		if err == nil {
			return cl, nil
		}
		w.log.Debug("dial", "err", err)
		if !w.sleep(500 * time.Millisecond) {
			return nil, errors.New("stopped")
		}
	}
}

// Setup creates the topic.
func (w *Workload) Setup(ctx context.Context) error {
	switch w.cfg.Client {
	case "", ClientGRPC:
	case ClientKafka:
		if err := newKafkaDriver(w.cfg, w.c.KafkaAddrs(), w.log).checkAPIs(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown client mode %q (want one of %v)", w.cfg.Client, Clients)
	}
	cl, err := w.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.CreateTopic(ctx, w.cfg.Topic, w.cfg.Partitions, client.TopicConfig{})
	if err != nil && client.Kind(err) != client.KindTopicExists {
		return fmt.Errorf("create topic: %w", err)
	}
	return nil
}

// Start launches every client goroutine.
func (w *Workload) Start(ctx context.Context) {
	perProducer := w.cfg.Rate / float64(max(w.cfg.Producers, 1))
	for i := 0; i < w.cfg.Producers; i++ {
		w.wg.Add(1)
		go func(i int) { defer w.wg.Done(); w.producer(ctx, i, perProducer) }(i)
	}
	for i := 0; i < w.cfg.Pollers; i++ {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.poller(ctx) }()
	}
	for i := 0; i < w.cfg.GroupConsumers; i++ {
		var parts []int32
		for p := int32(0); p < w.cfg.Partitions; p++ {
			if int(p)%w.cfg.GroupConsumers == i {
				parts = append(parts, p)
			}
		}
		w.wg.Add(1)
		go func(i int) { defer w.wg.Done(); w.groupConsumer(ctx, i, parts) }(i)
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.sampler(ctx) }()
}

// Stop ends the clients: producers stop sending and wait (bounded) for
// their outstanding sends; consumers and the sampler stop.
func (w *Workload) Stop() {
	close(w.stop)
	w.wg.Wait()
}

// classify maps a send or commit error to a history type: info when the
// outcome is unknown (the write may have happened), fail when it
// definitely did not.
func classify(err error) history.Type {
	switch {
	case err == nil:
		return history.OK
	case client.IsOutcomeUnknown(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, client.ErrClosed), client.Code(err) == codes.Canceled:
		return history.Info
	default:
		return history.Fail
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return fmt.Sprintf("[%s] %s", client.Code(err), s)
}

const maxOutstanding = 2000

func (w *Workload) producer(ctx context.Context, idx int, rate float64) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(idx)+1))
	interval := time.Duration(float64(time.Second) / max(rate, 1))
	w.driverSessions(ctx, func(d driver, proc int) bool {
		s, err := d.newSender(ctx, proc)
		if err != nil {
			w.log.Debug("new producer", "client", w.cfg.Client, "err", err)
			return w.sleep(500 * time.Millisecond)
		}
		return w.produceWith(s, proc, rng, interval)
	})
}

// produceWith sends through s until Stop (false) or a fatal producer error
// (true: start a new producer process), then closes s and waits for every
// send's outcome.
func (w *Workload) produceWith(s sender, proc int, rng *rand.Rand, interval time.Duration) bool {
	var (
		outstanding sync.WaitGroup
		n           atomic.Int64
		fatal       atomic.Bool
	)
	next := time.Now()
	for !w.stopped() && !fatal.Load() {
		if d := time.Until(next); d > 0 && !w.sleep(d) {
			break
		}
		next = next.Add(interval)
		if time.Until(next) < -time.Second {
			next = time.Now() // do not burst after a stall
		}
		if !w.belowOutstanding(&n) {
			break
		}
		part := int32(rng.IntN(int(w.cfg.Partitions)))
		v := w.values[part].Add(1)
		inv := w.rec.Invoke(history.Op{Process: proc, F: history.FSend, P: part, V: v})
		n.Add(1)
		outstanding.Add(1)
		s.send(part, v, func(o sendOutcome) {
			defer outstanding.Done()
			defer n.Add(-1)
			w.rec.Complete(inv, o.t, func(c *history.Op) {
				c.O = o.off
				c.Err = o.err
			})
			if o.t == history.OK {
				w.acks.Add(1)
				w.lastOK.Store(time.Now().UnixNano())
			}
			if o.fatal {
				fatal.Store(true)
			}
		})
	}
	s.close()
	outstanding.Wait()
	return fatal.Load()
}

// belowOutstanding waits until fewer than maxOutstanding sends of a
// producer are in flight; false when the workload stops first.
func (w *Workload) belowOutstanding(n *atomic.Int64) bool {
	for n.Load() >= maxOutstanding {
		if !w.sleep(10 * time.Millisecond) {
			return false
		}
	}
	return true
}

// poll records one poll of k by proc; false when the reader must be
// replaced (errReaderReset).
func (w *Workload) poll(ctx context.Context, k reader, proc int) bool {
	inv := w.rec.Invoke(history.Op{Process: proc, F: history.FPoll})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rs, err := k.poll(pctx)
	cancel()
	if len(rs) > 0 || err == nil {
		w.rec.Complete(inv, history.OK, func(c *history.Op) { c.Recs = rs; c.Err = w.readErrString(err) })
	} else {
		w.rec.Complete(inv, history.Fail, func(c *history.Op) { c.Err = w.readErrString(err) })
		w.sleep(100 * time.Millisecond)
	}
	if errors.Is(err, errReaderReset) {
		w.readerResets.Add(1)
		return false
	}
	return true
}

// readErrString is a read error as the history records it.
func (w *Workload) readErrString(err error) string {
	if err == nil || w.cfg.Client != ClientKafka {
		return errString(err)
	}
	return kafkaErrString(err)
}

// driverSessions opens a driver of the configured client mode and runs
// session with a new process id until the workload stops or session
// returns false.
func (w *Workload) driverSessions(ctx context.Context, session func(d driver, proc int) bool) {
	d, err := w.openDriver(ctx)
	if err != nil {
		w.log.Warn("client driver", "err", err)
		return
	}
	defer d.close()
	for !w.stopped() {
		if !session(d, w.proc()) {
			return
		}
	}
}

// sessions dials a client and runs session with a new process id until
// the workload stops or session returns false.
func (w *Workload) sessions(ctx context.Context, session func(cl *client.Client, proc int) bool) {
	cl, err := w.dial(ctx)
	if err != nil {
		return
	}
	defer cl.Close()
	for !w.stopped() {
		if !session(cl, w.proc()) {
			return
		}
	}
}

// consumer opens a consumer; on failure it waits 500 ms and returns nil
// and whether the workload goes on.
func (w *Workload) consumer(ctx context.Context, cl *client.Client, cfg client.ConsumerConfig) (*client.Consumer, bool) {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	k, err := cl.NewConsumer(kctx, cfg)
	cancel()
	if err != nil {
		return nil, w.sleep(500 * time.Millisecond)
	}
	return k, true
}

func (w *Workload) poller(ctx context.Context) {
	w.driverSessions(ctx, func(d driver, proc int) bool {
		k, err := d.newReader(ctx, proc)
		if err != nil {
			w.log.Debug("new reader", "client", w.cfg.Client, "err", err)
			return w.sleep(500 * time.Millisecond)
		}
		defer k.close()
		for !w.stopped() && w.poll(ctx, k, proc) {
		}
		return true
	})
}

func (w *Workload) groupConsumer(ctx context.Context, idx int, parts []int32) {
	if len(parts) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 1000+uint64(idx)))
	w.sessions(ctx, func(cl *client.Client, proc int) bool {
		// Read the group's committed offsets, then start a consumer from
		// them (NewConsumer resolves them itself).
		if !w.fetchOffsets(ctx, cl, proc) {
			return w.sleep(500 * time.Millisecond)
		}
		k, goOn := w.consumer(ctx, cl, client.ConsumerConfig{Topic: w.cfg.Topic, Group: w.cfg.Group, Partitions: parts,
			Start: client.Earliest, MaxWait: 500 * time.Millisecond, MaxRecords: 1000})
		if k == nil {
			return goOn
		}
		life := time.Now().Add(time.Duration(5+rng.IntN(10)) * time.Second)
		lastCommit := time.Now()
		for !w.stopped() && time.Now().Before(life) {
			w.poll(ctx, grpcReader{k}, proc)
			if time.Since(lastCommit) > time.Second {
				w.commit(ctx, cl, k, proc, parts)
				lastCommit = time.Now()
			}
		}
		w.commit(ctx, cl, k, proc, parts)
		_ = k.Close()
		return true
	})
}

// fetchOffsets records one read of the group's committed offsets by proc;
// false when it failed.
func (w *Workload) fetchOffsets(ctx context.Context, cl *client.Client, proc int) bool {
	inv := w.rec.Invoke(history.Op{Process: proc, F: history.FFetchOffsets, Group: w.cfg.Group})
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	offs, err := cl.FetchOffsets(fctx, w.cfg.Group, w.cfg.Topic)
	cancel()
	if client.Kind(err) == client.KindNotFound {
		err = nil // the group has no committed offsets yet
	}
	if err != nil {
		w.rec.Complete(inv, history.Fail, func(c *history.Op) { c.Err = errString(err) })
		return false
	}
	w.rec.Complete(inv, history.OK, func(c *history.Op) {
		for _, o := range offs {
			c.Offsets = append(c.Offsets, history.Offset{P: o.Partition, O: o.Offset})
		}
	})
	return true
}

func (w *Workload) commit(ctx context.Context, cl *client.Client, k *client.Consumer, proc int, parts []int32) {
	var oc []client.OffsetCommit
	var ho []history.Offset
	for _, p := range parts {
		if pos, ok := k.Position(p); ok && pos > 0 {
			oc = append(oc, client.OffsetCommit{Topic: w.cfg.Topic, Partition: p, Offset: pos})
			ho = append(ho, history.Offset{P: p, O: pos})
		}
	}
	if len(oc) == 0 {
		return
	}
	inv := w.rec.Invoke(history.Op{Process: proc, F: history.FCommit, Group: w.cfg.Group, Offsets: ho})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := cl.CommitOffsets(cctx, w.cfg.Group, oc...)
	cancel()
	w.rec.Complete(inv, classify(err), func(c *history.Op) { c.Err = errString(err) })
}

// SetPaused tells the sampler which agents are stopped (it skips them).
func (w *Workload) SetPaused(i int, paused bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused == nil {
		w.paused = map[int]bool{}
	}
	w.paused[i] = paused
}

// sampler records each agent's view of partition leadership.
func (w *Workload) sampler(ctx context.Context) {
	proc := w.proc()
	for w.sleep(500 * time.Millisecond) {
		for i := range w.c.Agents {
			if !w.c.Running(i) || w.c.Paused(i) {
				continue
			}
			w.SampleLeaders(ctx, i, proc)
		}
	}
}

// SampleLeaders records agent i's partition leaders (nothing on error).
func (w *Workload) SampleLeaders(ctx context.Context, i, proc int) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var pr transport.PartitionsResponse
	if err := w.c.GetJSON(sctx, i, "/api/v1/topics/"+w.cfg.Topic+"/partitions", &pr); err != nil {
		return
	}
	inv := w.rec.Invoke(history.Op{Process: proc, F: history.FLeaders, Node: w.c.Agents[i].ID})
	w.rec.Complete(inv, history.OK, func(c *history.Op) {
		for _, p := range pr.Partitions {
			c.Leaders = append(c.Leaders, history.LeaderObs{P: p.Partition, Leader: p.Leader, Epoch: p.LeaderEpoch})
		}
	})
}

// Partitions returns agent i's partition states (high watermark, flushed
// offset...).
func (w *Workload) Partitions(ctx context.Context, i int) (map[int32][3]int64, error) {
	var pr transport.PartitionsResponse
	if err := w.c.GetJSON(ctx, i, "/api/v1/topics/"+w.cfg.Topic+"/partitions", &pr); err != nil {
		return nil, err
	}
	out := map[int32][3]int64{}
	for _, p := range pr.Partitions {
		out[p.Partition] = [3]int64{p.LowWatermark, p.HighWatermark, p.FlushedOffset}
	}
	return out, nil
}
