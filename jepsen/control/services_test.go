package control

import (
	"path/filepath"
	"testing"

	"github.com/streamhouse/streamhouse/s3seg/s3segtest"
)

// TestMinIOOutage: the harness's MinIO comes up with its bucket, and an
// outage (Stop) and recovery (Start) keep its address.
func TestMinIOOutage(t *testing.T) {
	bin, err := s3segtest.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := StartMinIO(bin, "127.0.0.1", filepath.Join(dir, "minio"), filepath.Join(dir, "minio.log"), "jepsen")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := m.Addr
	if m.Endpoint() != "http://"+addr || !m.Running() {
		t.Fatalf("endpoint %s, addr %s, running %v", m.Endpoint(), addr, m.Running())
	}
	m.Stop()
	if m.Running() {
		t.Fatal("running after Stop")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if !m.Running() || m.Addr != addr {
		t.Fatalf("after Start: running %v, addr %s (was %s)", m.Running(), m.Addr, addr)
	}
	m.srv.PutRaw(t, m.Bucket, "after-outage", []byte("v")) // the bucket survived
}
