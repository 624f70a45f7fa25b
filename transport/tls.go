package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// TLS plumbing: a certificate key pair read from files (and re-read when
// they change, so certificates can be rotated without a restart), the
// public listeners' server config and the peer port's mutual-TLS config.

// DefaultCertCheckInterval is how often, at most, CertFiles looks at the
// files' modification times (on a handshake).
const DefaultCertCheckInterval = 5 * time.Second

// CertFiles serves a certificate and its private key from PEM files. A
// handshake at least CheckInterval after the previous look stats both
// files and, when either changed, loads the pair again; a pair that fails
// to load (half-written files during a rotation, a mismatched key) is
// logged and the previous one is kept. Safe for concurrent use.
type CertFiles struct {
	certPath, keyPath string
	log               *slog.Logger
	// CheckInterval: 0 = DefaultCertCheckInterval; negative = never reload.
	CheckInterval time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
	checked time.Time
}

// LoadCertFiles loads a certificate chain (PEM, leaf first) and its private
// key (PEM). Errors say which file could not be read or parsed, and whether
// the key does not belong to the certificate. log may be nil.
func LoadCertFiles(certPath, keyPath string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cf := &CertFiles{certPath: certPath, keyPath: keyPath, log: log.With("component", "tls")}
	cert, cm, km, err := loadKeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	cf.cert, cf.certMod, cf.keyMod, cf.checked = cert, cm, km, time.Now()
	return cf, nil
}

// loadKeyPair reads and parses the pair, returning the files' modification
// times.
func loadKeyPair(certPath, keyPath string) (*tls.Certificate, time.Time, time.Time, error) {
	var zero time.Time
	if certPath == "" || keyPath == "" {
		return nil, zero, zero, errors.New("both a certificate file and a key file are needed")
	}
	cs, err := os.Stat(certPath)
	if err != nil {
		return nil, zero, zero, fmt.Errorf("certificate file: %w", err)
	}
	ks, err := os.Stat(keyPath)
	if err != nil {
		return nil, zero, zero, fmt.Errorf("key file: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, zero, zero, fmt.Errorf("certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, zero, zero, fmt.Errorf("key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "does not match"):
			return nil, zero, zero, fmt.Errorf("the private key in %s does not belong to the certificate in %s: %w", keyPath, certPath, err)
		case strings.Contains(msg, "in certificate input"):
			return nil, zero, zero, fmt.Errorf("certificate file %s holds no PEM certificate: %w", certPath, err)
		case strings.Contains(msg, "key input"), strings.Contains(msg, "private key"):
			return nil, zero, zero, fmt.Errorf("key file %s holds no usable PEM private key: %w", keyPath, err)
		}
		return nil, zero, zero, fmt.Errorf("loading %s and %s: %w", certPath, keyPath, err)
	}
	return &cert, cs.ModTime(), ks.ModTime(), nil
}

// Certificate returns the current pair, reloading it first when the files
// changed (see CertFiles).
func (c *CertFiles) Certificate() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	every := c.CheckInterval
	if every == 0 {
		every = DefaultCertCheckInterval
	}
	now := time.Now()
	if every < 0 || now.Sub(c.checked) < every {
		return c.cert
	}
	c.checked = now
	cs, err1 := os.Stat(c.certPath)
	ks, err2 := os.Stat(c.keyPath)
	if err1 != nil || err2 != nil || (cs.ModTime().Equal(c.certMod) && ks.ModTime().Equal(c.keyMod)) {
		return c.cert
	}
	cert, cm, km, err := loadKeyPair(c.certPath, c.keyPath)
	if err != nil {
		c.log.Warn("the certificate files changed but do not load; keeping the previous certificate", "cert", c.certPath, "key", c.keyPath, "err", err)
		return c.cert
	}
	c.cert, c.certMod, c.keyMod = cert, cm, km
	c.log.Info("reloaded the TLS certificate", "cert", c.certPath, "not_after", cert.Leaf.NotAfter)
	return c.cert
}

// Leaf returns the parsed leaf certificate of the current pair.
func (c *CertFiles) Leaf() *x509.Certificate {
	return c.Certificate().Leaf
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.Certificate(), nil
}

// GetClientCertificate is a tls.Config.GetClientCertificate.
func (c *CertFiles) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.Certificate(), nil
}

// ServerTLSConfig is the TLS config of the public listeners (REST, gRPC):
// TLS 1.2 or later, the certificate from cf.
func ServerTLSConfig(cf *CertFiles) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cf.GetCertificate}
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// PeerMTLSConfig is the peer port's mutual-TLS config (PeerConfig.TLS):
// TLS 1.3, every agent presents cf's certificate on both sides of a
// connection, and accepts a peer only if the peer's certificate chains to
// ca. Host names are not checked: membership of the cluster is having a
// certificate from the cluster's own CA, whatever address the agent has
// (pods and VMs change addresses), so ca must be a CA dedicated to this
// cluster — never a public one.
func PeerMTLSConfig(cf *CertFiles, ca *x509.CertPool) *tls.Config {
	verify := func(cs tls.ConnectionState) error {
		return VerifyPeerChain(cs.PeerCertificates, ca)
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       cf.GetCertificate,
		GetClientCertificate: cf.GetClientCertificate,
		// Both directions are verified by VerifyConnection against ca
		// alone (no host name, see above); the standard verification would
		// require the dialed host in the certificate.
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   verify,
	}
}

// VerifyPeerChain checks that certs (leaf first) chain to a root in ca and
// that the leaf is valid now.
func VerifyPeerChain(certs []*x509.Certificate, ca *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("peer certificate (subject %q) is not signed by the cluster CA: %w", certs[0].Subject.String(), err)
	}
	return nil
}
