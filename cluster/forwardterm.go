package cluster

import (
	"net/http"
	"strconv"
)

// A forward names the Raft term in which the forwarding agent knew its
// target as leader (DESIGN.md, "A forward ends when its leader is
// replaced"); the target refuses it ("not applied") unless it leads that
// same term. A forward is cut only once another leader — a later term —
// is known, so a cut request that the network delivers afterwards (an
// iptables DROP keeps it in the kernel's send queue) finds its target
// either leading a later term (refused here) or still in the old term,
// where a majority has moved on: an entry it appends then commits only if
// that agent is elected again with the entry in its log (rare, and within
// the "outcome unknown" its caller was given).
const forwardTermHeader = "Streamhouse-Forward-Term"

func setForwardTerm(req *http.Request, term uint64) {
	if term > 0 {
		req.Header.Set(forwardTermHeader, strconv.FormatUint(term, 10))
	}
}

// forwardTermDiffers reports whether a forward was sent to the leader of
// another term than current (and that term). No header (an older agent)
// never differs; a malformed one does.
func forwardTermDiffers(req *http.Request, current uint64) (differs bool, term, now uint64) {
	v := req.Header.Get(forwardTermHeader)
	if v == "" {
		return false, 0, current
	}
	t, err := strconv.ParseUint(v, 10, 64)
	if err != nil || t == 0 {
		return true, 0, current
	}
	return t != current, t, current
}
