package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Reads of another agent's local state (its durability, its metrics
// history) go through the agent the client talks to: it asks the other
// agent's REST API, at the address gossip advertises, with the caller's
// Authorization header, each call bounded by peerTimeout and its body by
// peerBodyLimit, so a dead or slow agent costs one bounded wait.

const (
	peerTimeout   = 2 * time.Second
	peerBodyLimit = 4 << 20
)

// peerResult is one agent's answer (body) or why there is none (err).
type peerResult struct {
	id, err string
	body    []byte
}

// fromPeers asks every other member with an HTTP address for path, in
// parallel, and returns their answers ordered by member ID.
func (s *HTTPServer) fromPeers(r *http.Request, path, self string) []peerResult {
	if s.cfg.Cluster == nil {
		return nil
	}
	var members []ClusterMember
	for _, m := range s.cfg.Cluster.ClusterStatus().Members {
		if m.ID != self {
			members = append(members, m)
		}
	}
	out := make([]peerResult, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		out[i].id = m.ID
		if m.GossipState == "dead" || m.GossipState == "left" || m.HTTPAddr == "" {
			out[i].err = "agent is " + orUnknown(m.GossipState) + " (not asked)"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].body, out[i].err = s.getPeer(r, m.HTTPAddr, path)
		}()
	}
	wg.Wait()
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// peerMember finds member id's HTTP address.
func (s *HTTPServer) peerMember(id string) (string, error) {
	if s.cfg.Cluster == nil {
		return "", &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "cluster status is not available on this agent"}
	}
	for _, m := range s.cfg.Cluster.ClusterStatus().Members {
		if m.ID == id {
			if m.HTTPAddr == "" {
				return "", &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, retryAfter: true,
					msg: fmt.Sprintf("agent %s advertises no HTTP address", clip(id))}
			}
			return m.HTTPAddr, nil
		}
	}
	return "", &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: fmt.Sprintf("no agent %q in the cluster", clip(id))}
}

// proxyToPeer answers r with agent id's answer to path (status and body
// passed through; an unreachable agent is 503 unavailable).
func (s *HTTPServer) proxyToPeer(w http.ResponseWriter, r *http.Request, id, path string) error {
	addr, err := s.peerMember(id)
	if err != nil {
		return err
	}
	body, code, err := s.doPeer(r, addr, path)
	if err != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, retryAfter: true,
			msg: fmt.Sprintf("agent %s did not answer: %v", clip(id), err)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	return nil
}

// getPeer GETs path from addr and wants a 200.
func (s *HTTPServer) getPeer(r *http.Request, addr, path string) ([]byte, string) {
	body, code, err := s.doPeer(r, addr, path)
	if err != nil {
		return nil, err.Error()
	}
	if code != http.StatusOK {
		var e errorResponse
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Sprintf("%d %s: %s", code, e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Sprintf("HTTP %d", code)
	}
	return body, ""
}

func (s *HTTPServer) doPeer(r *http.Request, addr, path string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	scheme := "http"
	if s.cfg.TLSConfig != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, 0, err
	}
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := s.peerClient().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, peerBodyLimit))
	return body, resp.StatusCode, err
}

func (s *HTTPServer) peerClient() *http.Client {
	if s.cfg.PeerClient != nil {
		return s.cfg.PeerClient
	}
	return http.DefaultClient
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
