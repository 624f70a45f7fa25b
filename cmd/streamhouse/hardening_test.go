package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadyDoesNotRevealObjectStore: with the object store unreachable,
// the public GET /ready says so without naming its endpoint or bucket (the
// details are in the agent's log).
func TestReadyDoesNotRevealObjectStore(t *testing.T) {
	c := testConfig(t, t.TempDir())
	endpoint := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	c.S3Endpoint, c.S3Bucket, c.S3PathStyle = endpoint, "tenant-private-bucket", true
	c.AWSAccessKeyID, c.AWSSecretKey, c.S3TimeoutMs = "key-id", "key-secret", 300
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	a, err := startAgent(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	var body string
	waitFor(t, 30*time.Second, "/ready reports the object store", func() bool {
		resp, err := http.Get("http://" + a.http.Addr() + "/ready")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 503 && strings.Contains(body, "object store")
	})
	for _, secret := range []string{"127.0.0.1:" + endpoint[len("http://127.0.0.1:"):], "tenant-private-bucket", "key-id"} {
		if strings.Contains(body, secret) {
			t.Fatalf("/ready reveals %q: %s", secret, body)
		}
	}
}
