// Command jepsen is StreamHouse's failover-testing harness: it builds the
// agent, runs 3 or 5 agent processes (each in its own network namespace,
// or on loopback behind a fault proxy) with real MinIO and PostgreSQL
// servers, drives producers and consumers through the Go client (or
// franz-go over the Kafka protocol, -clients kafka) while a
// nemesis injects faults on a seeded schedule, records every operation in
// a history and checks it (package checker). See docs/jepsen.md.
//
//	go run ./jepsen -profile smoke
//	go run ./jepsen -profile full -seeds 3 -duration 60s
//	go run ./jepsen -class partition-leader -seed 42 -duration 60s
//	go run ./jepsen -check path/to/history.jsonl
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/streamhouse/streamhouse/jepsen/checker"
	"github.com/streamhouse/streamhouse/jepsen/control"
	"github.com/streamhouse/streamhouse/jepsen/history"
	"github.com/streamhouse/streamhouse/jepsen/nemesis"
	"github.com/streamhouse/streamhouse/jepsen/workload"
	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// classSpec is one fault class of the matrix.
type classSpec struct {
	kinds []string
	mixed bool
	lossy bool
	dr    string           // DR drill moment; "" for nemesis runs
	env   []string         // extra agent environment
	hold  [2]time.Duration // fault hold range; zero = the default 3-10 s
	// smallDisk: every agent on its own small filesystem (diskfull.go).
	smallDisk bool
}

var classes = map[string]classSpec{}

// classOrder is the report order.
var classOrder []string

func init() {
	for _, k := range nemesis.Kinds {
		classes[k] = classSpec{kinds: []string{k}}
		classOrder = append(classOrder, k)
	}
	classes["lossy-kill"] = classSpec{kinds: []string{nemesis.KillOne, nemesis.KillLeader, nemesis.KillAll}, lossy: true}
	classes["mixed"] = classSpec{kinds: nemesis.Kinds, mixed: true, lossy: true}
	classes[nemesis.DiskFull] = classSpec{kinds: []string{nemesis.DiskFull}, smallDisk: true}
	classOrder = append(classOrder, "lossy-kill", "mixed", nemesis.DiskFull)
	for _, m := range drMoments {
		classes["dr-"+m] = classSpec{dr: m}
		classOrder = append(classOrder, "dr-"+m)
	}
	addClockClasses()
}

// smokeClasses: a few fault classes for CI (about 1 minute each).
var smokeClasses = []string{nemesis.KillLeader, nemesis.PartitionLeader, nemesis.Pause, nemesis.WipeKill, "lossy-kill", "dr-mid-flush"}

// smokeKafkaClasses: the smoke profile's runs with Kafka clients (franz-go
// producers and readers), after the gRPC runs.
var smokeKafkaClasses = []string{nemesis.KillLeader, nemesis.PartitionLeader}

type options struct {
	profile    string
	class      string
	seed       uint64
	seeds      int
	duration   time.Duration
	agents     int
	mode       string
	out        string
	rate       float64
	partitions int
	clients    []string // "": the profile's default
	bin        string
	keepData   bool
	check      string
	cleanup    bool
	verbose    bool
}

func main() {
	var o options
	flag.StringVar(&o.profile, "profile", "", "smoke (a few fault classes, CI) or full (every class × -seeds)")
	flag.StringVar(&o.class, "class", "", "run one fault class (comma-separated list allowed); see -list")
	flag.Uint64Var(&o.seed, "seed", 0, "first seed (0: derived from the clock, printed)")
	flag.IntVar(&o.seeds, "seeds", 1, "seeds per class (seed, seed+1, ...)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "fault phase per run")
	flag.IntVar(&o.agents, "agents", 3, "agents per cluster (3 or 5)")
	flag.StringVar(&o.mode, "net", control.ModeAuto, "network: auto, netns (namespaces + iptables) or proxy (loopback + fault proxy)")
	flag.StringVar(&o.out, "out", "", "output directory (default .cache/jepsen/<time>)")
	flag.Float64Var(&o.rate, "rate", 200, "records per second sent over all producers")
	flag.IntVar(&o.partitions, "partitions", 4, "partitions of the test topic")
	flag.StringVar(&o.bin, "bin", "", "agent binary (default: build ./cmd/streamhouse once)")
	flag.BoolVar(&o.keepData, "keep-data", false, "keep agent data dirs of passing runs")
	flag.StringVar(&o.check, "check", "", "only check a recorded history.jsonl and print the result")
	flag.BoolVar(&o.cleanup, "cleanup", false, "delete every jepsen namespace and bridge not owned by a running harness (also unowned ones), then exit")
	flag.BoolVar(&o.verbose, "v", false, "log harness details to stderr")
	summarize := flag.String("summarize", "", "merge the results.json of these output dirs (comma-separated) into -out and print the summary")
	recheck := flag.Bool("recheck", false, "with -summarize: run the checker again on every run's recorded history")
	clients := flag.String("clients", "", "client modes of every run, comma-separated: grpc, kafka (default grpc; the smoke profile adds Kafka runs of "+strings.Join(smokeKafkaClasses, ", ")+")")
	list := flag.Bool("list", false, "list the fault classes and exit")
	flag.Parse()
	if *clients != "" {
		o.clients = strings.Split(*clients, ",")
	}
	if *list {
		for _, c := range classOrder {
			fmt.Println(c)
		}
		return
	}
	if o.cleanup {
		fmt.Println("removed:", control.CleanupStale(true))
		return
	}
	if o.check != "" {
		os.Exit(checkFile(o.check))
	}
	if *summarize != "" {
		os.Exit(merge(o, strings.Split(*summarize, ","), *recheck))
	}
	os.Exit(runMatrix(o))
}

func checkFile(path string) int {
	ops, err := history.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts, _ := checkerOptions(filepath.Dir(path)) // -check is lenient: what decodes is used
	res := checker.Check(ops, opts)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
	if !res.Valid {
		return 1
	}
	return 0
}

// checkerOptions reads the checker options a run kept in dir (zero
// options when there are none); on a decoding error it returns what
// decoded, and the error.
func checkerOptions(dir string) (checker.Options, error) {
	var opts checker.Options
	b, err := os.ReadFile(filepath.Join(dir, "checker-options.json"))
	if err != nil {
		return opts, nil
	}
	err = json.Unmarshal(b, &opts)
	return opts, err
}

type runSpec struct {
	class    string
	client   string // workload.ClientGRPC or workload.ClientKafka
	seed     uint64
	duration time.Duration
}

// name is the run's directory name: class, client unless gRPC, seed.
func (r runSpec) name() string {
	if r.client == workload.ClientKafka {
		return fmt.Sprintf("%s-%s-s%d", r.class, r.client, r.seed)
	}
	return fmt.Sprintf("%s-s%d", r.class, r.seed)
}

// plan lists the runs: every class of the profile (or -class) with every
// client mode of -clients (gRPC by default), each with -seeds seeds; the
// smoke profile without -clients adds its Kafka runs.
func plan(o options) ([]runSpec, error) {
	var names []string
	switch {
	case o.class != "":
		names = strings.Split(o.class, ",")
	case o.profile == "smoke":
		names = smokeClasses
	case o.profile == "full":
		names = classOrder
	default:
		return nil, errors.New("give -profile smoke|full or -class NAME (see -list)")
	}
	clients := o.clients
	if len(clients) == 0 {
		clients = []string{workload.ClientGRPC}
	}
	for _, c := range clients {
		if !slices.Contains(workload.Clients, c) {
			return nil, fmt.Errorf("unknown client mode %q (want %s)", c, strings.Join(workload.Clients, ", "))
		}
	}
	var runs []runSpec
	add := func(names, clients []string) error {
		for _, c := range clients {
			for _, n := range names {
				if _, ok := classes[n]; !ok {
					return fmt.Errorf("unknown class %q (see -list)", n)
				}
				for s := 0; s < o.seeds; s++ {
					runs = append(runs, runSpec{class: n, client: c, seed: o.seed + uint64(s), duration: o.duration})
				}
			}
		}
		return nil
	}
	if err := add(names, clients); err != nil {
		return nil, err
	}
	if o.class == "" && o.profile == "smoke" && len(o.clients) == 0 {
		_ = add(smokeKafkaClasses, []string{workload.ClientKafka})
	}
	return runs, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the streamhouse module")
	}
	return filepath.Dir(mod), nil
}

func runMatrix(o options) int {
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	runs, err := plan(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if o.agents != 3 && o.agents != 5 {
		fmt.Fprintln(os.Stderr, "jepsen: -agents must be 3 or 5")
		return 2
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if o.out == "" {
		o.out = filepath.Join(root, ".cache", "jepsen", time.Now().Format("20060102-150405"))
	}
	log, closeLog, err := openLog(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	defer closeLog()
	fmt.Printf("jepsen: %d runs, seed %d (reproduce with -seed %d), output %s\n", len(runs), o.seed, o.seed, o.out)

	t0 := time.Now()
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(o.out, "streamhouse")
		if err := buildAgent(root, bin); err != nil {
			fmt.Fprint(os.Stderr, "jepsen: ", err)
			return 2
		}
		fmt.Printf("jepsen: built the agent in %v\n", time.Since(t0).Round(100*time.Millisecond))
	}
	minio, err := s3segtest.MinIOBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if removed := control.CleanupStale(false); len(removed) > 0 {
		log.Info("removed stale namespaces and bridges", "names", removed)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	results := runAll(ctx, o, runs, bin, minio, log, t0)
	sum := writeResults(o.out, o, results, time.Since(t0))
	fmt.Println()
	fmt.Print(sum)
	fmt.Printf("\njepsen: %d runs in %v; results in %s\n", len(results), time.Since(t0).Round(time.Second), o.out)
	return exitCode(results, len(runs))
}

// openLog creates the output directory and the harness log in it (also
// on stderr with -v).
func openLog(o options) (*slog.Logger, func(), error) {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(filepath.Join(o.out, "jepsen.log"))
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = logf
	if o.verbose {
		w = io.MultiWriter(logf, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), func() { _ = logf.Close() }, nil
}

// buildAgent builds ./cmd/streamhouse of the module at root into bin; the
// error carries the compiler's output.
func buildAgent(root, bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/streamhouse")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the agent: %v\n%s", err, out)
	}
	return nil
}

// runAll runs the matrix one run at a time until done or interrupted,
// printing a line per run and rewriting the results after each.
func runAll(ctx context.Context, o options, runs []runSpec, bin, minio string, log *slog.Logger, t0 time.Time) []RunResult {
	var results []RunResult
	for i, r := range runs {
		if ctx.Err() != nil {
			break
		}
		fmt.Printf("[%d/%d] %-32s seed %-8d ", i+1, len(runs), classLabel(r.class, r.client), r.seed)
		res := runOne(ctx, o, r, bin, minio, log)
		results = append(results, res)
		fmt.Printf("%6d ops %5d acked  %5.1fs  %s\n", res.Ops, res.SendsOK, res.Elapsed.Seconds(), verdict(res))
		writeResults(o.out, o, results, time.Since(t0))
	}
	return results
}

// stalledProducerSends: a producer process with more sends than this after
// its last acknowledgement is named on the run's line (a healthy one's
// last sends are acknowledged when the clients stop).
const stalledProducerSends = 100

// verdict is a run's outcome in a word or a few.
func verdict(res RunResult) string {
	switch {
	case res.Anomalies > 0:
		return fmt.Sprintf("ANOMALIES %v", nonzero(res.Counts))
	case len(res.Errors) > 0:
		return "ERROR " + res.Errors[0]
	}
	var notes []string
	if res.ReadResets > 0 {
		notes = append(notes, fmt.Sprintf("%d reader resets", res.ReadResets))
	}
	if t := res.ProcTail; t.Sends > stalledProducerSends {
		notes = append(notes, fmt.Sprintf("producer process %d: %d sends after its last acknowledged one (sent at %.1f s)", t.Process, t.Sends, t.LastAckS))
	}
	if len(notes) > 0 {
		return "ok (" + strings.Join(notes, "; ") + ")"
	}
	return "ok"
}

// exitCode is 1 when a run found anomalies or errors or the matrix was
// cut short (planned runs), else 0.
func exitCode(results []RunResult, planned int) int {
	for _, r := range results {
		if r.Anomalies > 0 || len(r.Errors) > 0 {
			return 1
		}
	}
	if len(results) < planned {
		return 1
	}
	return 0
}

func nonzero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// merge combines the runs of several output directories (e.g. a matrix
// resumed after an interruption) into one results.json and summary.md.
func merge(o options, dirs []string, recheck bool) int {
	var all []RunResult
	var elapsed time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "results.json"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "jepsen:", err)
			return 2
		}
		var doc struct {
			Elapsed time.Duration `json:"elapsed_ns"`
			Runs    []RunResult   `json:"runs"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			fmt.Fprintln(os.Stderr, "jepsen:", d, err)
			return 2
		}
		if recheck {
			for i := range doc.Runs {
				if err := recheckRun(&doc.Runs[i]); err != nil {
					fmt.Fprintln(os.Stderr, "jepsen: recheck:", err)
					return 2
				}
			}
		}
		all = append(all, doc.Runs...)
		elapsed += doc.Elapsed
	}
	if o.out == "" {
		o.out = dirs[0]
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	fmt.Print(writeResults(o.out, o, all, elapsed))
	fmt.Printf("\n%d runs, %v of run time, merged into %s\n", len(all), elapsed.Round(time.Second), o.out)
	return 0
}

// recheckRun recomputes a run's verdict from its recorded history and
// checker options.
func recheckRun(r *RunResult) error {
	ops, err := history.Load(filepath.Join(r.Dir, "history.jsonl"))
	if err != nil {
		return err
	}
	opts, err := checkerOptions(r.Dir)
	if err != nil {
		return err
	}
	r.setVerdict(checker.Check(ops, opts))
	return nil
}
