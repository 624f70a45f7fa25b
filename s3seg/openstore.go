package s3seg

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreConfig chooses and configures the object store an agent (or a DR
// restore) uses. The messages OpenStore logs and returns name the
// environment variables cmd/streamhouse maps onto the fields.
type StoreConfig struct {
	// S3 is used when S3.Bucket is set (S3_BUCKET).
	S3 S3Config
	// Dir is the local directory used otherwise (OBJECT_STORE_DIR).
	Dir string
	// PrivateDir says Dir is this agent's own (inside its data dir) while
	// the agent is part of a cluster: OpenStore warns that the other agents
	// cannot read what it flushes.
	PrivateDir bool
}

// OpenStore opens S3 when cfg.S3.Bucket is set, else the local-directory
// store in cfg.Dir, wrapped by Instrumented (backend "s3" or "local") on
// reg. S3 is not contacted here (NewS3Store): an unreachable store or a
// missing bucket shows in Check.
func OpenStore(ctx context.Context, cfg StoreConfig, reg prometheus.Registerer, log *slog.Logger) (ObjectStore, error) {
	if cfg.S3.Bucket == "" {
		local, err := NewLocalStore(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("local object store (OBJECT_STORE_DIR=%s): %w", cfg.Dir, err)
		}
		if cfg.PrivateDir {
			log.Warn("this agent is part of a cluster but its object store is a private directory: other agents cannot read the segments it flushes; set S3_BUCKET (or OBJECT_STORE_DIR on shared storage)")
		}
		log.Info("object store: local directory (set S3_BUCKET to use S3)", "dir", local.Dir())
		return Instrumented(local, reg, "local"), nil
	}
	s3, err := NewS3Store(ctx, cfg.S3)
	if err != nil {
		return nil, fmt.Errorf("S3 object store (S3_BUCKET=%s): %w", cfg.S3.Bucket, err)
	}
	log.Info("object store: S3", "bucket", cfg.S3.Bucket, "endpoint", cfg.S3.Endpoint, "region", cfg.S3.Region, "path_style", cfg.S3.PathStyle)
	return Instrumented(s3, reg, "s3"), nil
}
