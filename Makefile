# StreamHouse — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/streamhouse
TOOLS := $(CURDIR)/.cache/bin
STATICCHECK_VERSION := v0.8.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Packages whose tests run by default (everything; long soaks live behind their own targets).
PKGS := ./...

MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
# MinIO (AGPL) is only ever run as a separate process by the tests, never imported.
# The binary is cached in the git-ignored .cache/bin and in $(HOME)/.cache/streamhouse/bin
# (so a fresh clone on the same machine does not rebuild it).
MINIO := $(TOOLS)/minio
MINIO_HOME_CACHE := $(HOME)/.cache/streamhouse/bin/minio
# helm for the chart tests (deploy/): built from the Go module proxy once per machine (a few
# minutes), cached like MinIO. The deploy tests find it through STREAMHOUSE_HELM.
HELM_VERSION := v3.21.4
HELM := $(TOOLS)/helm-$(HELM_VERSION)
HELM_HOME_CACHE := $(HOME)/.cache/streamhouse/bin/helm-$(HELM_VERSION)
# What the tests need from the environment: MinIO, helm, and (on PATH) docker-compose.
TEST_ENV := STREAMHOUSE_MINIO=$(MINIO) STREAMHOUSE_HELM=$(HELM)

.PHONY: help build run test test-race deploy-test lint bench bench-micro bench-agent bench-cluster bench-compare fuzz clean deps postgres docker-compose chromium dr-drill cluster cluster-stop proto jepsen jepsen-smoke

# The name column is as wide as the longest target (grep -h: no file names
# even when MAKEFILE_LIST holds several files).
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} \
		{ name[NR] = $$1; desc[NR] = $$2; if (length($$1) > w) w = length($$1) } \
		END { f = sprintf("  %%-%ds  %%s\n", w); for (i = 1; i <= NR; i++) printf f, name[i], desc[i] }'

build: ## Build bin/streamhouse
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/streamhouse

run: build ## Start one agent with embedded defaults (data in ./data, REST on :8080)
	./$(BIN) agent

test: lint deps ## Lint, then run every test (unit, integration against MinIO, crash, deploy files)
	$(TEST_ENV) $(GO) test -count=1 -timeout 15m $(PKGS)

test-race: deps ## Run the tests with the race detector
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 20m $(PKGS)

deploy-test: $(HELM) docker-compose ## Check deploy/: helm lint + template of the chart, docker-compose config of the compose files
	$(TEST_ENV) $(GO) test -count=1 ./deploy/

deps: $(MINIO) postgres $(HELM) docker-compose chromium ## Build/cache what the tests run (MinIO, PostgreSQL server, helm, docker-compose, Chromium)

# The tests start their own PostgreSQL servers (initdb + postgres in a temp dir);
# they need the server binaries, which Debian's postgresql package provides.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || [ -n "$$PG_BIN" ]; then :; \
	else echo "installing PostgreSQL server binaries for the integration tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi; fi

dr-drill: build deps ## The disaster-recovery drill (3 agents, MinIO, PostgreSQL), verbose, with its measured recovery point and restore time
	set -o pipefail; STREAMHOUSE_MINIO=$(MINIO) $(GO) test -count=1 -v -run 'TestDisasterRecoveryDrill|TestRestoreCommand|TestPostgresOutage' ./cmd/streamhouse/ 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|DR drill|dr_test|pgsync_test'

# The web console's browser tests (cmd/streamhouse console_browser_test.go) drive
# Debian's headless Chromium through the DevTools protocol (chromedp).
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "$$CHROMIUM" ]; then :; \
	else echo "installing chromium for the web console's browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; fi

# `docker-compose config` validates the compose files in deploy/ (Debian's docker-compose 1.29;
# without recommends: no Docker daemon is needed or installed).
docker-compose:
	@if command -v docker-compose >/dev/null 2>&1; then :; \
	else echo "installing docker-compose for the compose file tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; fi; fi

$(HELM):
	@mkdir -p $(TOOLS)
	@if [ -x "$(HELM_HOME_CACHE)" ]; then cp "$(HELM_HOME_CACHE)" $(HELM); \
	else echo "building helm $(HELM_VERSION) for the chart tests (a few minutes, once)"; \
	  GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) && mv $(TOOLS)/helm $(HELM) && \
	  mkdir -p $$(dirname "$(HELM_HOME_CACHE)") && cp $(HELM) "$(HELM_HOME_CACHE)"; fi

$(MINIO):
	@mkdir -p $(TOOLS)
	@if [ -x "$(MINIO_HOME_CACHE)" ]; then cp "$(MINIO_HOME_CACHE)" $(MINIO); \
	else echo "building MinIO $(MINIO_VERSION) for the integration tests (about 5 minutes, once)"; \
	  GOBIN=$(TOOLS) $(GO) install github.com/minio/minio@$(MINIO_VERSION) && \
	  mkdir -p $$(dirname "$(MINIO_HOME_CACHE)") && cp $(MINIO) "$(MINIO_HOME_CACHE)"; fi

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(TOOLS)/staticcheck ## gofmt, go vet, staticcheck and the import-boundary check
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOLS)/staticcheck $(PKGS)
	$(GO) test -count=1 -run 'TestImportBoundaries|TestImportViolationRules' ./cmd/streamhouse/

proto: ## Regenerate transport/gen from transport/proto (pinned buf + protoc-gen-go/-grpc in .cache/bin)
	GO=$(GO) ./transport/proto/generate.sh

BENCH_RESULTS := $(CURDIR)/.cache/bench/results.jsonl
BENCH_CHART := $(CURDIR)/.cache/bench/curves.txt
bench: build deps ## Micro-benchmarks, then load tests of a local agent and of a 3-agent cluster on MinIO; ends with one table
	@mkdir -p $(dir $(BENCH_RESULTS)) && rm -f $(BENCH_RESULTS)
	$(MAKE) bench-micro bench-agent bench-cluster
	@echo; echo "== summary ($(BENCH_RESULTS); latency-vs-throughput charts in $(BENCH_CHART))"; ./$(BIN) bench --summarize $(BENCH_RESULTS) --chart $(BENCH_CHART)

bench-micro: ## Go micro-benchmarks (WAL, segment format, FSM apply, partitioner)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./wal/ ./s3seg/ ./fsm/ ./partition/

BENCH_DIR := $(shell mktemp -d -u /tmp/streamhouse-bench.XXXXXX)
bench-agent: build deps ## Start a local agent (embedded defaults, then MinIO) and run `streamhouse bench` against it
	@set -e; dir=$(BENCH_DIR); mkdir -p $$dir $(dir $(BENCH_RESULTS)); trap 'kill $$(jobs -p) 2>/dev/null || true; wait; rm -rf '$$dir EXIT; \
	echo "== single agent, local-directory object store"; \
	./$(BIN) agent --http-port 18080 --grpc-port 19090 --peer-port 19093 --kafka-port 19092 --data-dir $$dir/a --log-level warn 2>$$dir/agent-a.log & pid=$$!; \
	until curl -sf localhost:18080/ready >/dev/null; do sleep 0.2; done; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, local store, REST, saturated' --server http://127.0.0.1:18080 --topic tput --partitions 8 --records 1000000 --batch 1000 --concurrency 8; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, local store, REST, fixed rate' --server http://127.0.0.1:18080 --topic lat --partitions 8 --duration 15s --rate 50000 --batch 50 --concurrency 16 --no-consume; \
	echo "== single agent, gRPC (Go client, idempotent producer)"; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, local store, gRPC, saturated' --server http://127.0.0.1:18080 --protocol grpc --grpc-server 127.0.0.1:19090 --topic gtput --partitions 8 --records 1000000 --batch 1000 --concurrency 8; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, local store, gRPC, fixed rate' --server http://127.0.0.1:18080 --protocol grpc --grpc-server 127.0.0.1:19090 --topic glat --partitions 8 --duration 15s --rate 50000 --batch 50 --concurrency 16 --no-consume; \
	echo "== single agent, Kafka protocol (franz-go, idempotent producer)"; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, local store, Kafka, saturated' --server http://127.0.0.1:18080 --protocol kafka --kafka-server 127.0.0.1:19092 --topic ktput --partitions 8 --records 1000000 --batch 1000 --concurrency 8; \
	kill $$pid; wait $$pid || true; \
	echo "== single agent, MinIO (64 partitions), then cold reads after a restart"; \
	MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret $(MINIO) server $$dir/minio --address 127.0.0.1:19000 --console-address 127.0.0.1:19001 --quiet >$$dir/minio.log 2>&1 & \
	until curl -sf localhost:19000/minio/health/ready >/dev/null; do sleep 0.2; done; mkdir -p $$dir/minio/streamhouse; \
	s3env="S3_ENDPOINT=http://127.0.0.1:19000 S3_BUCKET=streamhouse S3_PATH_STYLE=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret"; \
	env $$s3env ./$(BIN) agent --http-port 18080 --grpc-port 19090 --peer-port 19093 --data-dir $$dir/b --log-level warn 2>$$dir/agent-b.log & pid=$$!; \
	until curl -sf localhost:18080/ready >/dev/null; do sleep 0.2; done; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, MinIO, REST, 64 partitions' --server http://127.0.0.1:18080 --topic wide --partitions 64 --records 1000000 --batch 1000 --concurrency 8 --no-consume; \
	kill $$pid; wait $$pid || true; \
	env $$s3env ./$(BIN) agent --http-port 18080 --grpc-port 19090 --peer-port 19093 --data-dir $$dir/b --log-level warn 2>>$$dir/agent-b.log & \
	until curl -sf localhost:18080/ready >/dev/null; do sleep 0.2; done; \
	./$(BIN) bench --record $(BENCH_RESULTS) --label 'single agent, MinIO, cold consume after restart' --server http://127.0.0.1:18080 --topic wide --no-produce

# Every `func Fuzz...` in a _test.go file is a target: new fuzzers are picked up without editing
# this list. Each runs FUZZTIME (default 30s; the first seconds go to building and the seed corpus)
# on FUZZ_PARALLEL workers; a crasher is written to the package's testdata/fuzz and fails the run.
fuzz: ## Run every fuzz target briefly (decoders, the keys file, the peer handshake and its challenge-response); FUZZTIME per target, default 30s
	@set -e; for f in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
	  for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$name ($$(dirname $$f))"; \
	    $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $${FUZZTIME:-30s} -parallel $${FUZZ_PARALLEL:-2} ./$$(dirname $$f)/; \
	  done; done

# BENCH_CLUSTER defines start(): MinIO (once) and three agents on loopback sharing its bucket
# (BOOTSTRAP_EXPECT=3); each recipe that uses it creates $$dir and a trap that stops its jobs.
# The agents run with GOMEMLIMIT=$(BENCH_GOMEMLIMIT) (README "Configuration": the documented way
# to hold an agent's heap under a ceiling); BENCH_GOMEMLIMIT=off runs them without a limit.
BENCH_GOMEMLIMIT ?= 200MiB
define BENCH_CLUSTER
if ! [ -f $$dir/minio.pid ]; then \
  MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret $(MINIO) server $$dir/minio --address 127.0.0.1:19000 --console-address 127.0.0.1:19001 --quiet >$$dir/minio.log 2>&1 & echo $$! >$$dir/minio.pid; \
  until curl -sf localhost:19000/minio/health/ready >/dev/null; do sleep 0.2; done; mkdir -p $$dir/minio/streamhouse; fi; \
for i in 1 2 3; do \
  S3_ENDPOINT=http://127.0.0.1:19000 S3_BUCKET=streamhouse S3_PATH_STYLE=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret \
  NODE_ID=bench-$$i BIND_ADDR=127.0.0.1 HTTP_PORT=1808$$i GRPC_PORT=1909$$i PEER_PORT=1930$$i GOSSIP_PORT=1794$$i KAFKA_PORT=2909$$i \
  DATA_DIR=$$dir/node-$$i BOOTSTRAP_EXPECT=3 JOIN=127.0.0.1:17941,127.0.0.1:17942,127.0.0.1:17943 LOG_LEVEL=warn \
  $(if $(filter off,$(BENCH_GOMEMLIMIT)),,GOMEMLIMIT=$(BENCH_GOMEMLIMIT)) ./$(BIN) agent 2>>$$dir/node-$$i.log & echo $$! >$$dir/node-$$i.pid; \
done; for i in 1 2 3; do until curl -sf localhost:1808$$i/ready >/dev/null; do sleep 0.2; done; done
endef
BENCH_SERVERS := http://127.0.0.1:18081,http://127.0.0.1:18082,http://127.0.0.1:18083
BENCH_GRPC := 127.0.0.1:19091,127.0.0.1:19092,127.0.0.1:19093
BENCH_KAFKA := 127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093

# The scenarios are named like the OpenMessaging Benchmark's workloads (1 topic, 16 or 100
# partitions, 100 B or 1 KiB records); README "Benchmarks" says which target of the
# write-path issue each row checks. SWEEP_SECONDS is the length of each point of a sweep. Like
# OMB's, every fixed-rate row and sweep point first runs a warm-up at its rate that is not
# measured (5 s; SWEEP_WARMUP s per sweep point).
SWEEP_SECONDS ?= 10
SWEEP_WARMUP ?= 2
bench-cluster: build deps ## Start 3 agents on loopback sharing a MinIO bucket; fixed-rate, saturated and rate-sweep scenarios through all three
	@set -e; dir=$$(mktemp -d /tmp/streamhouse-bench.XXXXXX); mkdir -p $(dir $(BENCH_RESULTS)); trap 'kill $$(jobs -p) 2>/dev/null || true; wait; rm -rf '$$dir EXIT; \
	start() { $(BENCH_CLUSTER); }; start; \
	run() { ./$(BIN) bench --record $(BENCH_RESULTS) --server $(BENCH_SERVERS) "$$@"; }; \
	grpc="--protocol grpc --grpc-server $(BENCH_GRPC)"; kafka="--protocol kafka --kafka-server $(BENCH_KAFKA)"; \
	echo "== 3-agent cluster on MinIO, Go client (gRPC): fixed rates"; \
	run $$grpc --label '1 topic / 16 partitions / 100 B, 50 per request' --topic p16 --partitions 16 --duration 20s --rate 20000 --warmup 5s --batch 50 --concurrency 32 --no-consume; \
	run $$grpc --label '1 topic / 100 partitions / 100 B, 100 per request' --topic p100 --partitions 100 --duration 20s --rate 100000 --warmup 5s --batch 100 --concurrency 64 --no-consume; \
	echo "== saturated (Go client; then REST with each request spread over the partitions, producers on all three agents)"; \
	run $$grpc --label '1 topic / 100 partitions / 100 B, saturated, 1,000 per request' --topic gtput --partitions 100 --records 2000000 --batch 1000 --concurrency 16; \
	run $$grpc --label '1 topic / 100 partitions / 100 B, the same data read again (hot)' --topic gtput --no-produce; \
	run --label '1 topic / 16 partitions / 100 B, REST, saturated, 500 per request spread over partitions' --topic rtput --partitions 16 --duration 20s --batch 500 --concurrency 8 --spread --no-consume; \
	echo "== Kafka protocol (franz-go: idempotent producer, consumer read-back): the Go client's saturated and hot rows, then its fixed rate"; \
	run $$kafka --label '1 topic / 100 partitions / 100 B, Kafka (franz-go), saturated, 1,000 per request' --topic ktput --partitions 100 --records 2000000 --batch 1000 --concurrency 16; \
	run $$kafka --label '1 topic / 100 partitions / 100 B, Kafka (franz-go consumer), the same data read again (hot)' --topic ktput --no-produce; \
	run $$kafka --label '1 topic / 100 partitions / 100 B, Kafka (franz-go), 100 per request' --topic kp100 --partitions 100 --duration 20s --rate 100000 --warmup 5s --batch 100 --concurrency 64 --no-consume; \
	echo "== latency vs throughput up to saturation ($(SWEEP_SECONDS) s per rate)"; \
	run $$grpc --label '1 topic / 100 partitions / 100 B, rate sweep, 100 per request' --topic sweep100 --partitions 100 --batch 100 --concurrency 64 --duration $(SWEEP_SECONDS)s --warmup $(SWEEP_WARMUP)s --sweep 10000,20000,50000,100000,200000,400000,800000; \
	run $$grpc --label '1 topic / 100 partitions / 1 KiB, rate sweep, 100 per request' --topic sweep1k --partitions 100 --record-size 1024 --batch 100 --concurrency 64 --duration $(SWEEP_SECONDS)s --warmup $(SWEEP_WARMUP)s --sweep 5000,10000,20000,50000,100000,200000,400000; \
	echo "== restart all three agents (empty caches) and read gtput back cold from MinIO"; \
	for i in 1 2 3; do kill $$(cat $$dir/node-$$i.pid); done; for i in 1 2 3; do while kill -0 $$(cat $$dir/node-$$i.pid) 2>/dev/null; do sleep 0.2; done; done; \
	start; \
	run $$grpc --label '1 topic / 100 partitions / 100 B, cold consume after restarting all three' --topic gtput --no-produce

# nats-server for bench-compare: pinned, installed once from the Go module proxy into .cache/bin.
NATS_VERSION := v2.15.3
NATS_SERVER := $(TOOLS)/nats-server-$(NATS_VERSION)
$(NATS_SERVER):
	@mkdir -p $(TOOLS) && tmp=$$(mktemp -d) && trap 'rm -rf '$$tmp EXIT && \
	  echo "installing nats-server $(NATS_VERSION) for bench-compare (once)" && \
	  GOBIN=$$tmp $(GO) install github.com/nats-io/nats-server/v2@$(NATS_VERSION) && mv $$tmp/nats-server $@

# bench-compare: the same load against StreamHouse (3 agents on MinIO, acks after the Raft commit
# on a majority) and a 3-node NATS JetStream R3 cluster (its default sync_interval, 2 min; then
# `sync_interval: always` saturated only), one after the other on loopback. Same record size,
# records per request (NATS: async publishes whose acks are awaited together) and concurrency;
# neither system is scraped during its runs (peak RSS: VmHWM from /proc after them).
COMPARE_RESULTS := $(CURDIR)/.cache/bench/compare.jsonl
COMPARE_SECONDS ?= 15
COMPARE_LOAD := --topic cmp --partitions 16 --record-size 100 --no-consume --duration $(COMPARE_SECONDS)s
define COMPARE_RUNS
run --label '100 B, 100 per request, 32 concurrent, saturated' --batch 100 --concurrency 32; \
run --label '100 B, 1,000 per request, 16 concurrent, saturated' --batch 1000 --concurrency 16; \
run --label '100 B, 100 per request, 32 concurrent, fixed rate' --batch 100 --concurrency 32 --rate 20000 --warmup 5s; \
run --label '100 B, 100 per request, 32 concurrent, fixed rate' --batch 100 --concurrency 32 --rate 50000 --warmup 5s
endef
bench-compare: build deps $(NATS_SERVER) ## StreamHouse (3 agents, MinIO) vs NATS JetStream R3 (pinned nats-server), same load, one table with ratios
	@set -e; dir=$$(mktemp -d /tmp/streamhouse-compare.XXXXXX); mkdir -p $(dir $(COMPARE_RESULTS)); rm -f $(COMPARE_RESULTS); \
	trap 'kill $$(jobs -p) 2>/dev/null || true; wait; rm -rf '$$dir EXIT; \
	echo "== StreamHouse: 3 agents on MinIO, Go client (gRPC)"; \
	$(BENCH_CLUSTER); \
	run() { ./$(BIN) bench --record $(COMPARE_RESULTS) --system streamhouse --no-agent-metrics --server $(BENCH_SERVERS) --protocol grpc --grpc-server $(BENCH_GRPC) $(COMPARE_LOAD) "$$@"; }; \
	$(COMPARE_RUNS); \
	hwm() { printf '%s peak RSS (VmHWM), MiB:' "$$1"; shift; for f in "$$@"; do awk '/VmHWM/{printf " %d", $$2/1024}' /proc/$$(cat $$f)/status; done; echo; }; \
	hwm "StreamHouse agents" $$dir/node-*.pid; \
	for f in $$dir/*.pid; do kill $$(cat $$f); done; wait; \
	for sync in default always; do \
	  echo "== NATS JetStream $(NATS_VERSION), 3 nodes, R3 stream, sync_interval $$sync"; \
	  conf=$$dir/nats-$$sync; opt=; [ $$sync = always ] && opt=--nats-sync-interval=always; \
	  ./$(BIN) bench --nats-write-config $$conf $$opt; \
	  for i in 1 2 3; do out=$$($(NATS_SERVER) -t -c $$conf/n$$i.conf 2>&1) || { echo "$$out"; exit 1; }; done; \
	  for i in 1 2 3; do $(NATS_SERVER) -c $$conf/n$$i.conf >$$conf/n$$i.log 2>&1 & echo $$! >$$conf/n$$i.pid; done; \
	  for i in 2 3 4; do until curl -sf localhost:1442$$i/healthz >/dev/null; do sleep 0.2; done; done; \
	  system="nats (sync 2 min)"; [ $$sync = always ] && system="nats (sync always)"; \
	  run() { ./$(BIN) bench --record $(COMPARE_RESULTS) --target nats --system "$$system" --nats-url nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224 $(COMPARE_LOAD) "$$@"; }; \
	  if [ $$sync = always ]; then run --label '100 B, 100 per request, 32 concurrent, saturated' --batch 100 --concurrency 32; \
	  else $(COMPARE_RUNS); fi; \
	  hwm "NATS servers" $$conf/n*.pid; \
	  kill $$(jobs -p); wait; \
	done; \
	echo; echo "== StreamHouse vs NATS JetStream ($(COMPARE_RESULTS))"; ./$(BIN) bench --compare $(COMPARE_RESULTS)

CLUSTER_DIR := .cluster
# Ports apart from a single agent's defaults (8080, 9090, 9093, 7946), so `make run` works beside it.
cluster: build ## Start a local 3-agent cluster on loopback (gRPC :9191-9193, REST :8181-8183, data in .cluster/)
	@mkdir -p $(CLUSTER_DIR)
	@for i in 1 2 3; do \
	  if [ -f $(CLUSTER_DIR)/node-$$i.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/node-$$i.pid) 2>/dev/null; then echo "node-$$i already running"; continue; fi; \
	  NODE_ID=node-$$i BIND_ADDR=127.0.0.1 HTTP_PORT=818$$i GRPC_PORT=919$$i PEER_PORT=929$$i GOSSIP_PORT=794$$((6+i)) KAFKA_PORT=1909$$((1+i)) \
	  DATA_DIR=$(CLUSTER_DIR)/node-$$i OBJECT_STORE_DIR=$(CLUSTER_DIR)/objects BOOTSTRAP_EXPECT=3 JOIN=127.0.0.1:7947,127.0.0.1:7948,127.0.0.1:7949 \
	  nohup ./$(BIN) agent >$(CLUSTER_DIR)/node-$$i.log 2>&1 & echo $$! > $(CLUSTER_DIR)/node-$$i.pid; \
	done
	@for i in 1 2 3; do until curl -sf localhost:818$$i/ready >/dev/null; do sleep 0.2; done; done
	@./$(BIN) cluster status --server 127.0.0.1:9191,127.0.0.1:9192,127.0.0.1:9193
	@echo; echo "export STREAMHOUSE_SERVER=127.0.0.1:9191,127.0.0.1:9192,127.0.0.1:9193   # then: ./$(BIN) topic list"

cluster-stop: ## Stop the local cluster started by `make cluster` (data stays in .cluster/)
	@for i in 1 2 3; do f=$(CLUSTER_DIR)/node-$$i.pid; [ -f $$f ] && kill $$(cat $$f) 2>/dev/null; rm -f $$f; done; true

clean: ## Remove build output and local data
	rm -rf bin data $(CLUSTER_DIR)

# The jepsen harness (docs/jepsen.md): agent processes in network namespaces (or on loopback behind
# a fault proxy), MinIO and PostgreSQL, a seeded nemesis and a history checker. Runs as root for
# namespaces and iptables (apt-get install -y iptables), and for the tmpfs disks of the disk-full
# class. Output in .cache/jepsen/<time>/.
JEPSEN_SEEDS ?= 3
JEPSEN_DURATION ?= 60s
JEPSEN_SEED ?= 1
JEPSEN_FLAGS ?=
# Client modes of the full matrix (an axis: every class runs once per mode): grpc, kafka or grpc,kafka.
JEPSEN_CLIENTS ?= grpc
jepsen-smoke: deps ## Jepsen smoke profile: a few fault classes and a DR drill, 30 s each, plus two runs with Kafka clients (CI; under 10 minutes)
	STREAMHOUSE_MINIO=$(MINIO) $(GO) run ./jepsen -profile smoke -duration 30s -seed $(JEPSEN_SEED) $(JEPSEN_FLAGS)

jepsen: deps ## Jepsen full matrix: every fault class and DR moment x JEPSEN_SEEDS seeds x JEPSEN_CLIENTS, JEPSEN_DURATION each
	STREAMHOUSE_MINIO=$(MINIO) $(GO) run ./jepsen -profile full -clients $(JEPSEN_CLIENTS) -seeds $(JEPSEN_SEEDS) -duration $(JEPSEN_DURATION) -seed $(JEPSEN_SEED) $(JEPSEN_FLAGS)
