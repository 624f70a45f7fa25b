package fsm

import (
	"fmt"
	"sort"
)

// Producer epochs per partition (DESIGN.md, "Producer epochs per
// partition"): the rules are in checkSequence and recordSequence; this file
// holds their snapshot section.

// Snapshot item itemProducerEpochs (tag 4, after the state item, written
// only when State.EpochBumps is set; its presence restores EpochBumps): a
// section version byte (1), then the producers that have partition epochs,
// by ID: ID, then their epochs by topic ID and partition: topic ID,
// partition, epoch.
const producerEpochsSectionVersion = 1

func encodeProducerEpochs(st *State) []byte {
	e := enc{}
	e.u8(itemProducerEpochs)
	e.u8(producerEpochsSectionVersion)
	ids := make([]uint64, 0, len(st.Producers))
	for id, p := range st.Producers {
		if len(p.Epochs) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	e.uv(uint64(len(ids)))
	for _, id := range ids {
		es := st.Producers[id].partitionEpochs()
		e.uv(id)
		e.uv(uint64(len(es)))
		for _, pe := range es {
			e.uv(pe.TopicID)
			e.iv(int64(pe.Partition))
			e.uv(uint64(pe.Epoch))
		}
	}
	return e.b
}

func decodeProducerEpochs(b []byte, st *State) error {
	d := &dec{b: b}
	if v := d.u8(); d.err == nil && v != producerEpochsSectionVersion {
		return fmt.Errorf("%w: producer epochs section version %d not supported (max %d)", ErrDecode, v, producerEpochsSectionVersion)
	}
	st.EpochBumps = true
	d.each(2, func() {
		p := st.Producers[d.uv()]
		if p == nil || len(p.Epochs) > 0 {
			d.fail("producer epochs (of an unknown producer, or twice)")
			return
		}
		var es []ProducerEpoch
		d.each(3, func() {
			es = append(es, ProducerEpoch{TopicID: d.uv(), Partition: d.i32(), Epoch: d.u32()})
		})
		for _, pe := range es {
			if pe.Epoch <= p.Epoch {
				d.fail("producer partition epoch not above the producer's")
				return
			}
		}
		p.setPartitionEpochs(es)
	})
	if err := d.done("producer epochs section"); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: trailing bytes in producer epochs section", ErrDecode)
	}
	return nil
}
