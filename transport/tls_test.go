package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamhouse/streamhouse/transport/transporttest"
)

func TestLoadCertFilesErrors(t *testing.T) {
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "CA")
	a := ca.Issue(t, "a").Write(t, ca, dir, "a")
	b := ca.Issue(t, "b").Write(t, ca, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cert, key, want string
	}{
		{"missing certificate", filepath.Join(dir, "nope.crt"), a.Key, "certificate file"},
		{"missing key", a.Cert, filepath.Join(dir, "nope.key"), "key file"},
		{"mismatched key", a.Cert, b.Key, "does not belong to the certificate"},
		{"garbage certificate", garbage, a.Key, "holds no PEM certificate"},
		{"garbage key", a.Cert, garbage, "key file"},
		{"key and certificate swapped", a.Key, a.Cert, "holds no PEM certificate"},
	}
	for _, c := range cases {
		if _, err := LoadCertFiles(c.cert, c.key, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	cf, err := LoadCertFiles(a.Cert, a.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cf.Leaf().Subject.CommonName != "a" {
		t.Fatalf("leaf %v", cf.Leaf().Subject)
	}
	if _, err := LoadCertPool(garbage); err == nil {
		t.Error("a CA file without PEM loaded")
	}
}

// TestCertFilesReload: new files are picked up; a broken rewrite keeps the
// previous certificate.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	ca := transporttest.NewCA(t, "CA")
	f := ca.Issue(t, "first").Write(t, ca, dir, "agent")
	cf, err := LoadCertFiles(f.Cert, f.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf.CheckInterval = time.Nanosecond
	touch := func(at time.Time) {
		for _, p := range []string{f.Cert, f.Key} {
			if err := os.Chtimes(p, at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	second := ca.Issue(t, "second")
	if err := os.WriteFile(f.Cert, second.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, second.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	touch(time.Now().Add(time.Minute))
	if cn := cf.Leaf().Subject.CommonName; cn != "second" {
		t.Fatalf("after rotation the certificate is %q", cn)
	}
	// Half a rotation: a new certificate with the old key does not load.
	third := ca.Issue(t, "third")
	if err := os.WriteFile(f.Cert, third.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	touch(time.Now().Add(2 * time.Minute))
	if cn := cf.Leaf().Subject.CommonName; cn != "second" {
		t.Fatalf("a mismatched rewrite replaced the certificate: %q", cn)
	}
}
