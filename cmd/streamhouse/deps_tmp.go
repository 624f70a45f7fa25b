package main
import (
 _ "github.com/hashicorp/raft"
 _ "github.com/hashicorp/raft-boltdb/v2"
 _ "github.com/hashicorp/go-hclog"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/pierrec/lz4/v4"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/prometheus/client_golang/prometheus/testutil"
 _ "go.uber.org/goleak"
 _ "github.com/alecthomas/kong"
)
func main(){}
