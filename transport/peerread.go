package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Reads of another agent's local state for the console (its durability,
// its metrics history) go through the agent the client talks to, which has
// already authorized the caller's key. It asks the other agent over the
// peer channel (PEER_PORT: authenticated by CLUSTER_SECRET or peer mTLS,
// the channel forwarded writes use), never over its REST API: the caller's
// Authorization header is not passed on, and addresses that gossip
// advertises for HTTP are not used. Only agents in the Raft configuration
// (admitted) are asked, at most maxPeerFanout per request, each call
// bounded by peerTimeout, its answer by peerBodyLimit, redirects refused,
// and at most maxPeerCalls calls in flight per agent.

// Peer RPC routes of PeerReadHandler.
const (
	PeerReadPathPrefix     = "/peer/v1/console/"
	PeerDurabilityPath     = "/peer/v1/console/durability"
	PeerMetricsHistoryPath = "/peer/v1/console/metrics-history"
)

const (
	peerTimeout   = 2 * time.Second
	peerBodyLimit = 1 << 20
	maxPeerFanout = 32
	maxPeerCalls  = 64
)

// peerResult is one agent's answer (body) or why there is none (err).
type peerResult struct {
	id, err string
	body    []byte
}

// PeerReadHandler serves other agents' console reads of this agent's
// local state (GET PeerDurabilityPath, GET PeerMetricsHistoryPath). The
// agent installs it on the peer mux: it carries no API-key check, the
// peer channel's authentication is its access control.
func (s *HTTPServer) PeerReadHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PeerDurabilityPath, func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.Durability == nil {
			s.writeError(w, &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "durability status is not available on this agent"})
			return
		}
		writeJSON(w, http.StatusOK, s.localDurability())
	})
	mux.HandleFunc("GET "+PeerMetricsHistoryPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.localHistory())
	})
	return mux
}

// admitted reports whether m is in the Raft configuration.
func admitted(m ClusterMember) bool { return m.Suffrage == "voter" || m.Suffrage == "nonvoter" }

// fromPeers asks every other admitted agent for path over the peer
// channel, in parallel (the first maxPeerFanout by ID), and returns their
// answers ordered by member ID.
func (s *HTTPServer) fromPeers(r *http.Request, path, self string) []peerResult {
	if s.cfg.Cluster == nil {
		return nil
	}
	var members []ClusterMember
	for _, m := range s.cfg.Cluster.ClusterStatus().Members {
		if m.ID != self && admitted(m) {
			members = append(members, m)
		}
	}
	out := make([]peerResult, len(members))
	var wg sync.WaitGroup
	asked := 0
	for i, m := range members {
		out[i].id = m.ID
		switch {
		case m.GossipState == "dead" || m.GossipState == "left":
			out[i].err = "agent is " + m.GossipState + " (not asked)"
		case asked >= maxPeerFanout:
			out[i].err = fmt.Sprintf("not asked: the console asks at most %d agents", maxPeerFanout)
		default:
			asked++
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, err := s.peerGet(r.Context(), m, path)
				out[i].body, out[i].err = body, errString(err)
			}()
		}
	}
	wg.Wait()
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// peerMember finds admitted agent id.
func (s *HTTPServer) peerMember(id string) (ClusterMember, error) {
	if s.cfg.Cluster == nil {
		return ClusterMember{}, &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "cluster status is not available on this agent"}
	}
	for _, m := range s.cfg.Cluster.ClusterStatus().Members {
		if m.ID == id && admitted(m) {
			return m, nil
		}
	}
	return ClusterMember{}, &apiError{status: http.StatusNotFound, code: CodeNotFound,
		msg: fmt.Sprintf("no agent %q in the Raft configuration", clip(id))}
}

// readPeer decodes admitted agent id's answer to path into v (an agent
// that does not answer well is 503 unavailable).
func (s *HTTPServer) readPeer(r *http.Request, id, path string, v any) error {
	m, err := s.peerMember(id)
	if err != nil {
		return err
	}
	body, err := s.peerGet(r.Context(), m, path)
	if err == nil {
		err = decodePeerJSON(body, v)
	}
	if err != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, retryAfter: true,
			msg: fmt.Sprintf("agent %s did not answer: %v", clip(id), err)}
	}
	return nil
}

// peerGet GETs path from agent m over the peer channel and wants a 200.
func (s *HTTPServer) peerGet(ctx context.Context, m ClusterMember, path string) ([]byte, error) {
	if s.cfg.PeerRPC == nil {
		return nil, errors.New("this agent has no peer channel")
	}
	if err := checkPeerAddr(m.PeerAddr); err != nil {
		return nil, err
	}
	select {
	case s.peerCalls <- struct{}{}:
		defer func() { <-s.peerCalls }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: m.PeerAddr, Path: path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	client := *s.cfg.PeerRPC
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	return readPeerAnswer(resp)
}

// readPeerAnswer reads at most peerBodyLimit bytes of a 200 answer.
func readPeerAnswer(resp *http.Response) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, peerBodyLimit+1))
	switch {
	case err != nil:
		return nil, err
	case len(body) > peerBodyLimit:
		return nil, fmt.Errorf("answer larger than %d bytes", peerBodyLimit)
	case resp.StatusCode != http.StatusOK:
		var e errorResponse
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%d %s: %s", resp.StatusCode, clip(e.Error.Code), clip(e.Error.Message))
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return body, nil
}

// checkPeerAddr accepts only a plain host:port (no path, query, fragment
// or user info can ride along into the URL).
func checkPeerAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || strings.ContainsAny(host, "/?#@\\% ")) {
		err = errors.New("bad host")
	}
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
			err = errors.New("bad port")
		}
	}
	if err != nil {
		return fmt.Errorf("agent has no usable peer address %q (not asked)", clip(addr))
	}
	return nil
}

func decodePeerJSON(body []byte, v any) error {
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	return nil
}

// gatherScalars sums every counter, gauge and untyped sample of g by
// metric name (over all label values); keep, when non-nil, selects the
// samples by name and labels.
func gatherScalars(g prometheus.Gatherer, keep func(name string, m *dto.Metric) bool) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := g.Gather() // a partial gather still has the metrics that worked
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "streamhouse_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			if keep != nil && !keep(name, m) {
				continue
			}
			switch {
			case m.Counter != nil:
				out[name] += m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] += m.Gauge.GetValue()
			case m.Untyped != nil:
				out[name] += m.Untyped.GetValue()
			}
		}
	}
	return out
}
