package fsm

import (
	"fmt"
	"sort"
)

// ---- apply ----

func (f *FSM) applyGroupJoin(c *GroupJoin) *Result {
	s := f.state
	if err := ValidateGroupName(c.Group); err != nil {
		return fail(CodeInvalid, "%v", err)
	}
	if res := validateJoinMembers(c); res != nil {
		return res
	}
	m := s.Memberships[c.Group]
	if m == nil {
		if _, has := s.Groups[c.Group]; !has && c.MaxGroups > 0 && int64(len(s.groupNameSet())) >= c.MaxGroups {
			return fail(CodeLimitExceeded, "the cluster holds %d consumer groups and the limit (MAX_GROUPS) is %d: delete unused groups or raise the limit", len(s.groupNameSet()), c.MaxGroups)
		}
		m = &GroupMembership{Group: c.Group, State: GroupStateEmpty}
	}
	if m.Generation != c.PrevGeneration {
		return fail(CodeIllegalGeneration, "group %q is in generation %d, the join completes generation %d", c.Group, m.Generation, c.PrevGeneration)
	}
	members := append([]GroupMember(nil), c.Members...)
	for i := range members {
		// Own copies: decoded bytes alias the log entry.
		members[i].Metadata = append([]byte(nil), members[i].Metadata...)
		members[i].Assignment = nil
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	s.Memberships[c.Group] = &GroupMembership{
		Group: c.Group, Generation: c.PrevGeneration + 1, State: GroupStateCompletingRebalance,
		ProtocolType: c.ProtocolType, Protocol: c.Protocol, Leader: c.Leader, Members: members, UpdatedAt: c.Timestamp,
	}
	return &Result{}
}

// validateJoinMembers checks a join's member list: not empty, unique IDs,
// the leader among them, a protocol named.
func validateJoinMembers(c *GroupJoin) *Result {
	if len(c.Members) == 0 {
		return fail(CodeInvalid, "a join needs at least one member")
	}
	if c.Protocol == "" || c.ProtocolType == "" {
		return fail(CodeInvalid, "a join needs a protocol type and a protocol")
	}
	seen := make(map[string]bool, len(c.Members))
	for _, m := range c.Members {
		if m.ID == "" || seen[m.ID] {
			return fail(CodeInvalid, "member id %q is empty or repeated", m.ID)
		}
		seen[m.ID] = true
	}
	if !seen[c.Leader] {
		return fail(CodeInvalid, "leader %q is not a member", c.Leader)
	}
	return nil
}

func (f *FSM) applyGroupSync(c *GroupSync) *Result {
	m := f.state.Memberships[c.Group]
	if m == nil {
		return fail(CodeGroupNotFound, "consumer group %q has no members", c.Group)
	}
	if m.Generation != c.Generation || m.State != GroupStateCompletingRebalance {
		return fail(CodeIllegalGeneration, "group %q is in generation %d (%s), the assignments are for generation %d", c.Group, m.Generation, m.State, c.Generation)
	}
	byID := make(map[string][]byte, len(c.Assignments))
	for _, a := range c.Assignments {
		if _, ok := m.Member(a.MemberID); !ok {
			return fail(CodeUnknownMember, "member %q is not in generation %d of group %q", a.MemberID, c.Generation, c.Group)
		}
		byID[a.MemberID] = append([]byte(nil), a.Assignment...)
	}
	for i := range m.Members {
		m.Members[i].Assignment = byID[m.Members[i].ID]
	}
	m.State = GroupStateStable
	m.UpdatedAt = c.Timestamp
	return &Result{}
}

func (f *FSM) applyGroupRemoveMembers(c *GroupRemoveMembers) *Result {
	m := f.state.Memberships[c.Group]
	if m == nil {
		return fail(CodeGroupNotFound, "consumer group %q has no members", c.Group)
	}
	if m.Generation != c.Generation {
		return fail(CodeIllegalGeneration, "group %q is in generation %d, not %d", c.Group, m.Generation, c.Generation)
	}
	gone := make(map[string]bool, len(c.MemberIDs))
	for _, id := range c.MemberIDs {
		if _, ok := m.Member(id); !ok {
			return fail(CodeUnknownMember, "member %q is not in generation %d of group %q", id, c.Generation, c.Group)
		}
		gone[id] = true
	}
	if len(gone) == 0 {
		return fail(CodeInvalid, "no members to remove")
	}
	kept := make([]GroupMember, 0, len(m.Members))
	for _, x := range m.Members {
		if !gone[x.ID] {
			kept = append(kept, x)
		}
	}
	m.Members, m.UpdatedAt = kept, c.Timestamp
	if len(kept) == 0 {
		// Kafka: the last member gone, a new (empty) generation.
		m.Generation++
		m.State, m.ProtocolType, m.Protocol, m.Leader = GroupStateEmpty, "", "", ""
		return &Result{}
	}
	m.State = GroupStatePreparingRebalance
	if gone[m.Leader] {
		m.Leader = ""
	}
	return &Result{}
}

// checkCommitMember is the membership check of a CommitOffsets: a member's
// commit needs the group's current generation; a commit without a member
// needs a group without members.
func (s *State) checkCommitMember(c *CommitOffsets) *Result {
	m := s.Memberships[c.Group]
	active := m != nil && len(m.Members) > 0
	if c.MemberID == "" {
		if active {
			return fail(CodeUnknownMember, "group %q has active members (generation %d): only its members may commit, with their generation", c.Group, m.Generation)
		}
		return nil
	}
	if !active {
		return fail(CodeUnknownMember, "member %q is not a member of group %q (it has no members)", c.MemberID, c.Group)
	}
	if _, ok := m.Member(c.MemberID); !ok {
		return fail(CodeUnknownMember, "member %q is not in generation %d of group %q", c.MemberID, m.Generation, c.Group)
	}
	if c.Generation != m.Generation {
		return fail(CodeIllegalGeneration, "generation %d of member %q is not group %q's current generation %d", c.Generation, c.MemberID, c.Group, m.Generation)
	}
	return nil
}

// groupNameSet is every group with offsets or a membership.
func (s *State) groupNameSet() map[string]bool {
	out := make(map[string]bool, len(s.Groups)+len(s.Memberships))
	for g := range s.Groups {
		out[g] = true
	}
	for g := range s.Memberships {
		out[g] = true
	}
	return out
}

// ---- reads ----

// Membership returns a copy of a group's membership (false: the group has
// never had members, or was deleted).
func (f *FSM) Membership(group string) (GroupMembership, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.Memberships[group]
	if !ok {
		return GroupMembership{}, false
	}
	return *m.clone(), true
}

// Memberships returns a copy of every group's membership, by group name.
func (f *FSM) Memberships() []GroupMembership {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]GroupMembership, 0, len(f.state.Memberships))
	for _, m := range f.state.Memberships {
		out = append(out, *m.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// ---- snapshot item ----

// itemMembership is the snapshot item holding the memberships, written
// after the state item only when a group has one, so snapshots of
// clusters without memberships stay byte-identical to before.
const itemMembership = 16

// membershipItemVersion is the item's own payload version.
const membershipItemVersion = 1

func encodeMemberships(s *State) []byte {
	names := make([]string, 0, len(s.Memberships))
	for g := range s.Memberships {
		names = append(names, g)
	}
	sort.Strings(names)
	e := enc{}
	e.u8(itemMembership)
	e.u8(membershipItemVersion)
	e.uv(uint64(len(names)))
	for _, g := range names {
		m := s.Memberships[g]
		e.str(m.Group)
		e.iv(int64(m.Generation))
		e.str(m.State)
		e.str(m.ProtocolType)
		e.str(m.Protocol)
		e.str(m.Leader)
		e.iv(m.UpdatedAt)
		e.uv(uint64(len(m.Members)))
		for i := range m.Members {
			encodeMember(&e, &m.Members[i])
			e.nbytes(m.Members[i].Assignment)
		}
	}
	return e.b
}

func decodeMemberships(b []byte, s *State) error {
	d := &dec{b: b}
	if v := d.u8(); d.err == nil && v != membershipItemVersion {
		return fmt.Errorf("%w: snapshot membership item version %d not supported", ErrDecode, v)
	}
	d.each(8, func() {
		m := &GroupMembership{}
		m.Group = d.str()
		m.Generation = d.i32()
		m.State = d.str()
		m.ProtocolType = d.str()
		m.Protocol = d.str()
		m.Leader = d.str()
		m.UpdatedAt = d.iv()
		m.Members = decodeSlice(d, 8, func(x *GroupMember) {
			decodeMember(d, x)
			x.Assignment = d.nbytes()
		})
		s.Memberships[m.Group] = m
	})
	if err := d.done("snapshot memberships"); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: trailing bytes in snapshot memberships", ErrDecode)
	}
	return nil
}
