package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kcatRun runs kcat (librdkafka) with stdin and returns its stdout.
func kcatRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed (Debian package kcat; .ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// kcat produces with each codec and consumes to the end of the partition;
// keys, values, empty values and null values (-Z) come back as sent.
func TestKcatRoundTripEveryCodec(t *testing.T) {
	_, base, kaddr := kafkaAgent(t)
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "kcat-" + codec
			createTopic(t, base, topic, 1)
			in := "k1:v1\nk2:" + strings.Repeat("x", 3000) + "\nk3:\n"
			kcatRun(t, in, "-P", "-b", kaddr, "-t", topic, "-p", "0", "-z", codec, "-K", ":", "-Z")
			// %k key, %S value length (-1: null), %s value.
			out := kcatRun(t, "", "-C", "-b", kaddr, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o %k %S %s\n")
			want := "0 k1 2 v1\n1 k2 3000 " + strings.Repeat("x", 3000) + "\n2 k3 -1 \n"
			if out != want {
				t.Fatalf("kcat consumed:\n%q\nwant\n%q", out, want)
			}
		})
	}
	if md := kcatRun(t, "", "-L", "-b", kaddr, "-t", "kcat-zstd"); !strings.Contains(md, `topic "kcat-zstd" with 1 partitions`) {
		t.Fatalf("kcat -L:\n%s", md)
	}
}
