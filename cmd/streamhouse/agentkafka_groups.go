package main

import (
	"context"
	"errors"

	"github.com/streamhouse/streamhouse/fsm"
	"github.com/streamhouse/streamhouse/partition"
	"github.com/streamhouse/streamhouse/transport/kafka"
)

// kafkaGroups adapts the group coordinator and the groups' offsets
// (package partition) to the Kafka listener's GroupCoordinator: transport
// imports no partition types, so the request and result types are
// converted here.
type kafkaGroups struct {
	coord  *partition.Coordinator
	groups *partition.Groups
}

var _ kafka.GroupCoordinator = kafkaGroups{}

func (k kafkaGroups) JoinGroup(ctx context.Context, req kafka.JoinRequest) (kafka.JoinResult, error) {
	pr := partition.JoinRequest{Group: req.Group, MemberID: req.MemberID, InstanceID: req.InstanceID,
		ClientID: req.ClientID, ClientHost: req.ClientHost, ProtocolType: req.ProtocolType,
		SessionTimeout: req.SessionTimeout, RebalanceTimeout: req.RebalanceTimeout, RequireMemberID: req.RequireMemberID}
	for _, p := range req.Protocols {
		pr.Protocols = append(pr.Protocols, partition.GroupProtocol(p))
	}
	res, err := k.coord.Join(ctx, pr)
	if err != nil {
		var idReq *partition.MemberIDRequiredError
		if errors.As(err, &idReq) {
			return kafka.JoinResult{}, &kafka.MemberIDRequiredError{MemberID: idReq.MemberID}
		}
		return kafka.JoinResult{}, err
	}
	out := kafka.JoinResult{Generation: res.Generation, ProtocolType: res.ProtocolType, Protocol: res.Protocol,
		LeaderID: res.LeaderID, MemberID: res.MemberID}
	for _, m := range res.Members {
		out.Members = append(out.Members, kafka.JoinMember(m))
	}
	return out, nil
}

func (k kafkaGroups) SyncGroup(ctx context.Context, req kafka.SyncRequest) (kafka.SyncResult, error) {
	res, err := k.coord.Sync(ctx, partition.SyncRequest(req))
	return kafka.SyncResult(res), err
}

func (k kafkaGroups) Heartbeat(ctx context.Context, group string, generation int32, memberID, instanceID string) error {
	return k.coord.Heartbeat(ctx, group, generation, memberID, instanceID)
}

func (k kafkaGroups) LeaveGroup(ctx context.Context, group string, members []kafka.LeaveMember) ([]error, error) {
	pm := make([]partition.LeaveMember, len(members))
	for i, m := range members {
		pm[i] = partition.LeaveMember(m)
	}
	return k.coord.Leave(ctx, group, pm)
}

func (k kafkaGroups) CommitOffsets(ctx context.Context, req kafka.MemberCommit) error {
	return k.coord.CommitOffsets(ctx, partition.MemberCommit(req))
}

func (k kafkaGroups) DescribeGroup(ctx context.Context, group string) (kafka.GroupDescription, error) {
	d, err := k.coord.Describe(ctx, group)
	if err != nil {
		return kafka.GroupDescription{}, err
	}
	out := kafka.GroupDescription{Group: d.Group, State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol,
		Generation: d.Generation, LeaderID: d.LeaderID}
	for _, m := range d.Members {
		out.Members = append(out.Members, kafka.MemberDescription{MemberID: m.MemberID, InstanceID: m.InstanceID,
			ClientID: m.ClientID, ClientHost: m.ClientHost, Metadata: m.Metadata, Assignment: m.Assignment})
	}
	return out, nil
}

func (k kafkaGroups) ListGroups(ctx context.Context) ([]kafka.GroupListing, error) {
	ls, err := k.coord.List(ctx)
	out := make([]kafka.GroupListing, len(ls))
	for i, l := range ls {
		out[i] = kafka.GroupListing(l)
	}
	return out, err
}

func (k kafkaGroups) GroupOffsets(ctx context.Context, group string) (fsm.GroupDescription, error) {
	return k.groups.DescribeGroup(ctx, group)
}

func (k kafkaGroups) DeleteGroup(ctx context.Context, group string) error {
	return k.groups.DeleteGroup(ctx, group)
}
