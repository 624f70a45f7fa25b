package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/streamhouse/streamhouse/transport/kafka"
)

// startKafka serves the Kafka protocol on KAFKA_PORT (0: off).
func (a *agent) startKafka(context.Context) error {
	c, part := a.cfg, a.part
	if c.KafkaPort == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.BindAddr, strconv.Itoa(c.KafkaPort)))
	if err != nil {
		return fmt.Errorf("KAFKA_PORT %d: %w", c.KafkaPort, err)
	}
	a.kafka = kafka.NewServer(kafka.Config{
		NodeID: a.node.NodeID(), Cluster: a.node, Topics: part.Admin(), Fetcher: part.Fetcher(), Admin: part.Admin(),
		Auth: a.sec.auth, Quotas: a.quotas, AutoCreateTopics: c.KafkaAutoCreate, DefaultPartitions: c.KafkaPartitions, MaxRecordBytes: int64(c.MaxRecordBytes),
		Producer: part.Producer(), Idempotent: part.Producer(), Offsets: part.Fetcher(),
		Groups: part.Groups(), Coordinator: part.Coordinator(),
		TLSConfig: a.sec.publicTLS, Connections: a.connections, Logger: a.log.With("listener", "kafka"),
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.kafka.Serve(ln)
	}()
	a.onClose("kafka", func(context.Context) error {
		err := a.kafka.Close()
		<-served
		return err
	})
	return nil
}
