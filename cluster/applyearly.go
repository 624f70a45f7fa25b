package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/streamhouse/streamhouse/fsm"
)

// Two-step answers to forwarded commands (DESIGN.md "Write path"). A
// forwarding agent proposes its entries one after another and must not
// let a later one reach Raft before an earlier one, so it used to forward
// the next entry only once the leader had answered the previous one —
// after its commit. With applyEarlyHeader the leader answers in two
// steps: the status line and headers (with applyEnqueuedHeader) as soon
// as Raft has taken the entry (hashicorp/raft's Apply, which takes entries
// in call order), then the body (an appliedJSON) once the entry is
// applied. The forwarding agent sends its next entry after the first
// step, so several of its entries commit together instead of one per
// round trip. A leader that does not know the header answers in one step,
// which the forwarding agent still reads.
const (
	applyEarlyHeader    = "Streamhouse-Apply-Early"
	applyEnqueuedHeader = "Streamhouse-Apply-Enqueued"
)

// applyAnswer gives a forwarded command's result, its Raft index, the
// outcome label (metrics) and its error.
type applyAnswer func() (*fsm.Result, uint64, string, error)

func answered(res *fsm.Result, index uint64, outcome string, err error) applyAnswer {
	return func() (*fsm.Result, uint64, string, error) { return res, index, outcome, err }
}

// appliedJSON is the body of a two-step answer.
type appliedJSON struct {
	Index   uint64          `json:"index,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
	Outcome string          `json:"outcome,omitempty"`
}

// applyEarly enqueues cmd, answers the status line, then the outcome.
func (n *Node) applyEarly(w http.ResponseWriter, req *http.Request, r *raft.Raft, cmd []byte) {
	start := time.Now()
	fut := r.Apply(cmd, n.cfg.ApplyTimeout)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(applyEnqueuedHeader, "1")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	res, index, err := n.awaitApply(req.Context(), fut, start)
	out := appliedJSON{Index: index}
	if err == nil {
		var b []byte
		if b, err = EncodeResult(res); err == nil {
			out.Result = b
		}
	}
	if err != nil {
		out.Outcome, out.Error = outcomeUnknown, err.Error()
		if errors.Is(err, fsm.ErrUnavailable) {
			out.Outcome = outcomeNotApplied
		}
	}
	_ = json.NewEncoder(w).Encode(out)
}

// readApplied reads the body of a two-step answer.
func readApplied(body io.Reader, leaderID string) (*fsm.Result, uint64, string, error) {
	var a appliedJSON
	if err := json.NewDecoder(io.LimitReader(body, 16<<20)).Decode(&a); err != nil {
		return nil, 0, outcomeUnknown, fmt.Errorf("%w: reading the answer of raft leader %s: %v", fsm.ErrOutcomeUnknown, leaderID, err)
	}
	if a.Error != "" {
		return nil, 0, outcomeLabel(a.Outcome), classifyApplyError(rpcError{Error: a.Error, Outcome: a.Outcome}, leaderID, http.StatusOK)
	}
	res, err := DecodeResult(a.Result)
	if err != nil {
		return nil, 0, outcomeUnknown, fmt.Errorf("%w: answer of raft leader %s: %v", fsm.ErrOutcomeUnknown, leaderID, err)
	}
	return res, a.Index, outcomeOK, nil
}

// outcomeLabel is the metric label of an error answer's outcome (as
// classifyApplyError reads it).
func outcomeLabel(outcome string) string {
	switch outcome {
	case outcomeNotApplied, outcomeInvalid:
		return outcome
	}
	return outcomeUnknown
}
