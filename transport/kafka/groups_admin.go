package kafka

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/fsm"
)

// handleListGroups lists the groups the principal may describe (with
// members, offsets or both), filtered by state from v4.
func (s *Server) handleListGroups(ctx context.Context, c *Conn, req *kmsg.ListGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	groups, err := s.cfg.Coordinator.List(ctx)
	if err != nil {
		resp.ErrorCode = groupErrorCode(err)
		return resp, nil
	}
	for _, g := range groups {
		if !stateWanted(req.StatesFilter, g.State) || s.authorize(c, OpDescribe, g.Group) != nil {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState = g.Group, g.ProtocolType, g.State
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}

// stateWanted: no filter, or the state is in it (case-insensitive, as
// Kafka compares).
func stateWanted(filter []string, state string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if strings.EqualFold(f, state) {
			return true
		}
	}
	return false
}

// handleDescribeGroups describes each group: state, protocol, members
// with their metadata and assignments. Any agent answers from the
// replicated membership; a group that does not exist is "Dead".
func (s *Server) handleDescribeGroups(ctx context.Context, c *Conn, req *kmsg.DescribeGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		if rg.ErrorCode = s.groupAccess(c, OpDescribe, name); rg.ErrorCode == 0 {
			d, err := s.cfg.Coordinator.Describe(ctx, name)
			if err != nil {
				rg.ErrorCode = groupErrorCode(err)
			} else {
				describedGroup(&rg, d)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}

// describedGroup fills a DescribeGroups answer from d.
func describedGroup(rg *kmsg.DescribeGroupsResponseGroup, d fsm.GroupMembershipDescription) {
	rg.State, rg.ProtocolType, rg.Protocol = d.State, d.ProtocolType, d.Protocol
	for _, m := range d.Members {
		rm := kmsg.NewDescribeGroupsResponseGroupMember()
		rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.MemberID, optString(m.InstanceID), m.ClientID, m.ClientHost
		rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
		rg.Members = append(rg.Members, rm)
	}
}

// handleDeleteGroups deletes groups (offsets and membership); a group
// with members is NON_EMPTY_GROUP (checked again when the deletion is
// applied), an unknown one GROUP_ID_NOT_FOUND.
func (s *Server) handleDeleteGroups(ctx context.Context, c *Conn, req *kmsg.DeleteGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		if rg.ErrorCode = s.groupAccess(c, OpDelete, name); rg.ErrorCode == 0 {
			rg.ErrorCode = groupErrorCode(s.cfg.Groups.DeleteGroup(ctx, name))
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
