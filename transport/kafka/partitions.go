package kafka

import (
	"fmt"

	"github.com/streamhouse/streamhouse/fsm"
)

// topicView caches, for one request, the partitions of the topics it
// names: leader checks and watermarks read the FSM once per topic.
type topicView struct {
	s       *Server
	routing bool // read through Topics.PartitionsForRouting
	parts   map[string][]fsm.PartitionInfo
	errs    map[string]error
	byID    map[[16]byte]string
}

func (s *Server) newTopicView() *topicView {
	return &topicView{s: s, parts: map[string][]fsm.PartitionInfo{}, errs: map[string]error{}}
}

// newRoutingView is a topicView for routing a produce: it does not pass
// the read barrier (Topics.PartitionsForRouting).
func (s *Server) newRoutingView() *topicView {
	v := s.newTopicView()
	v.routing = true
	return v
}

// partition returns one partition's FSM info; fsm.ErrTopicNotFound or
// fsm.ErrPartitionInvalid when it does not exist.
func (v *topicView) partition(topic string, p int32) (fsm.PartitionInfo, error) {
	parts, ok := v.parts[topic]
	if !ok {
		read := v.s.cfg.Topics.Partitions
		if v.routing {
			read = v.s.cfg.Topics.PartitionsForRouting
		}
		var err error
		if parts, err = read(topic); err != nil {
			v.errs[topic] = err
		}
		v.parts[topic] = parts
	}
	if err := v.errs[topic]; err != nil {
		return fsm.PartitionInfo{}, err
	}
	if p < 0 || int(p) >= len(parts) {
		return fsm.PartitionInfo{}, fmt.Errorf("%w: topic %q has no partition %d", fsm.ErrPartitionInvalid, topic, p)
	}
	return parts[p], nil
}

// nameOf resolves a topic ID (Produce v13+, Fetch v13+) to its name.
func (v *topicView) nameOf(id [16]byte) (string, bool) {
	if v.byID == nil {
		v.byID = map[[16]byte]string{}
		for _, t := range v.s.cfg.Topics.Topics() {
			v.byID[TopicID(t.ID)] = t.Name
		}
	}
	name, ok := v.byID[id]
	return name, ok
}
