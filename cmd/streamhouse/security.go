package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/streamhouse/streamhouse/transport"
)

// security is the agent's loaded security configuration (see
// docs/security.md): TLS for the public listeners, mutual TLS and the
// cluster secret for the peer port, the gossip key and the API keys.
type security struct {
	publicCert *transport.CertFiles // TLS_CERT_PATH/TLS_KEY_PATH; nil = plaintext REST and gRPC
	publicTLS  *tls.Config
	peerCert   *transport.CertFiles // PEER_TLS_* or the public pair, when TLS_CA_PATH is set
	peerTLS    *tls.Config          // nil = plaintext peer port
	secret     []byte               // CLUSTER_SECRET
	gossipKey  []byte               // GOSSIP_KEY, decoded
	auth       *transport.Authenticator
}

// validateSecurity checks the security settings that need no file access.
func (c *agentCmd) validateSecurity() []error {
	var errs []error
	if (c.TLSCertPath == "") != (c.TLSKeyPath == "") {
		errs = append(errs, errors.New("TLS_CERT_PATH and TLS_KEY_PATH must be set together"))
	}
	if (c.PeerTLSCertPath == "") != (c.PeerTLSKeyPath == "") {
		errs = append(errs, errors.New("PEER_TLS_CERT_PATH and PEER_TLS_KEY_PATH must be set together"))
	}
	if c.PeerTLSCertPath != "" && c.TLSCAPath == "" {
		errs = append(errs, errors.New("PEER_TLS_CERT_PATH is set but TLS_CA_PATH is not: peer TLS needs the cluster CA"))
	}
	if c.TLSCAPath != "" && c.TLSCertPath == "" && c.PeerTLSCertPath == "" {
		errs = append(errs, errors.New("TLS_CA_PATH (mutual TLS between agents) needs this agent's certificate: set TLS_CERT_PATH/TLS_KEY_PATH or PEER_TLS_CERT_PATH/PEER_TLS_KEY_PATH"))
	}
	if n := len(c.ClusterSecret); n > 0 && n < transport.MinClusterSecretLen {
		errs = append(errs, fmt.Errorf("CLUSTER_SECRET is %d bytes: use at least %d (e.g. openssl rand -base64 32)", n, transport.MinClusterSecretLen))
	}
	if c.GossipKey != "" {
		if _, err := decodeGossipKey(c.GossipKey); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MetricsAuth && c.APIKeysFile == "" {
		errs = append(errs, errors.New("METRICS_AUTH=true needs API_KEYS_FILE (there are no keys to check)"))
	}
	if c.PprofAddr != "" && !c.PprofAllowRemote {
		if host, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			errs = append(errs, fmt.Errorf("PPROF_ADDR=%q is not host:port", c.PprofAddr))
		} else if !isLoopback(strings.Trim(host, "[]")) {
			errs = append(errs, fmt.Errorf("PPROF_ADDR=%s listens beyond loopback: /debug/pprof is unauthenticated and exposes the agent's memory; bind 127.0.0.1 (and tunnel), or set PPROF_ALLOW_REMOTE=true", c.PprofAddr))
		}
	}
	return errs
}

// readSecretFiles fills CLUSTER_SECRET and GOSSIP_KEY from their *_FILE
// variants (one trailing newline is dropped). Setting both is an error.
func (c *agentCmd) readSecretFiles() error {
	for _, s := range []struct {
		name, fileName string
		value, file    *string
	}{
		{"CLUSTER_SECRET", "CLUSTER_SECRET_FILE", &c.ClusterSecret, &c.ClusterSecretFile},
		{"GOSSIP_KEY", "GOSSIP_KEY_FILE", &c.GossipKey, &c.GossipKeyFile},
	} {
		if *s.file == "" {
			continue
		}
		if *s.value != "" {
			return fmt.Errorf("%s and %s are both set: use one", s.name, s.fileName)
		}
		b, err := os.ReadFile(*s.file)
		if err != nil {
			return fmt.Errorf("%s: %w", s.fileName, err)
		}
		*s.value = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if *s.value == "" {
			return fmt.Errorf("%s=%s is empty", s.fileName, *s.file)
		}
	}
	return nil
}

// secretFlags are the settings that hold secrets: on the command line they
// are visible to every local user (ps, /proc/<pid>/cmdline).
var secretFlags = map[string]string{
	"cluster-secret":        "CLUSTER_SECRET_FILE or CLUSTER_SECRET",
	"gossip-key":            "GOSSIP_KEY_FILE or GOSSIP_KEY",
	"aws-secret-access-key": "AWS_SECRET_ACCESS_KEY or an instance role",
	"database-url":          "DATABASE_URL (with the password in ~/.pgpass or PGPASSFILE)",
	"token":                 "STREAMHOUSE_TOKEN", // the CLI's API key
}

// secretFlagsIn returns, for every secret given as a command-line flag in
// args, the flag and what to use instead (never the value).
func secretFlagsIn(args []string) (flags, instead []string) {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if use, ok := secretFlags[name]; ok && strings.HasPrefix(a, "--") {
			flags, instead = append(flags, "--"+name), append(instead, use)
		}
	}
	return flags, instead
}

// warnSecretFlags logs a warning (never the value) for every secret
// given as a command-line flag to the agent.
func warnSecretFlags(args []string, log *slog.Logger) {
	flags, instead := secretFlagsIn(args)
	for i, f := range flags {
		log.Warn("a secret was passed as a command-line flag, visible to every local user (ps, /proc); use "+instead[i]+" instead", "flag", f)
	}
}

// decodeGossipKey decodes GOSSIP_KEY: base64 (standard or URL alphabet,
// padded or not) of 16, 24 or 32 bytes, like Consul's and Nomad's keys.
func decodeGossipKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("GOSSIP_KEY is not valid base64 (generate one with: openssl rand -base64 32)")
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("GOSSIP_KEY decodes to %d bytes: it must be 16, 24 or 32 (openssl rand -base64 32)", n)
	}
	return key, nil
}

// loadSecurity reads the certificate, CA and key files. Errors name the
// environment variable and the file.
func (c *agentCmd) loadSecurity(log *slog.Logger) (*security, error) {
	s := &security{secret: []byte(c.ClusterSecret)}
	if len(s.secret) == 0 {
		s.secret = nil
	}
	var err error
	if c.GossipKey != "" {
		if s.gossipKey, err = decodeGossipKey(c.GossipKey); err != nil {
			return nil, err
		}
	}
	if c.TLSCertPath != "" {
		if s.publicCert, err = transport.LoadCertFiles(c.TLSCertPath, c.TLSKeyPath, log); err != nil {
			return nil, fmt.Errorf("TLS_CERT_PATH=%s / TLS_KEY_PATH=%s: %w", c.TLSCertPath, c.TLSKeyPath, err)
		}
		s.publicTLS = transport.ServerTLSConfig(s.publicCert)
	}
	if c.TLSCAPath != "" {
		pool, err := transport.LoadCertPool(c.TLSCAPath)
		if err != nil {
			return nil, fmt.Errorf("TLS_CA_PATH=%s: %w", c.TLSCAPath, err)
		}
		s.peerCert = s.publicCert
		if c.PeerTLSCertPath != "" {
			if s.peerCert, err = transport.LoadCertFiles(c.PeerTLSCertPath, c.PeerTLSKeyPath, log); err != nil {
				return nil, fmt.Errorf("PEER_TLS_CERT_PATH=%s / PEER_TLS_KEY_PATH=%s: %w", c.PeerTLSCertPath, c.PeerTLSKeyPath, err)
			}
		}
		chain, err := certChain(s.peerCert.Certificate())
		if err != nil {
			return nil, fmt.Errorf("peer certificate: %w", err)
		}
		if err := transport.VerifyPeerChain(chain, pool); err != nil {
			return nil, fmt.Errorf("TLS_CA_PATH=%s: this agent's own peer certificate does not verify against it, so no other agent would accept it: %w", c.TLSCAPath, err)
		}
		s.peerTLS = transport.PeerMTLSConfig(s.peerCert, pool)
	}
	if c.APIKeysFile != "" {
		keys, err := transport.LoadAPIKeysFile(c.APIKeysFile)
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_FILE: %w", err)
		}
		if len(keys) == 0 {
			log.Warn("API_KEYS_FILE holds no keys: every API request will be refused until keys are added", "file", c.APIKeysFile)
		}
		s.auth = transport.NewAuthenticator(keys, c.MetricsAuth)
	}
	return s, nil
}

// warnInsecure logs what is open when the agent listens beyond loopback.
func (c *agentCmd) warnInsecure(s *security, log *slog.Logger) {
	if isLoopback(c.BindAddr) {
		return
	}
	if s.auth == nil {
		log.Warn("API_KEYS_FILE is not set: the REST, gRPC and Kafka APIs accept requests from anyone who can reach them", "bind", c.BindAddr)
	} else if s.publicTLS == nil {
		log.Warn("API keys are on but TLS is not (TLS_CERT_PATH): tokens cross the network in clear text", "bind", c.BindAddr)
	}
	if s.peerTLS == nil && s.secret == nil {
		log.Warn("the peer port (Raft, agent RPC) is unauthenticated: set CLUSTER_SECRET and/or TLS_CA_PATH", "bind", c.BindAddr)
	}
	if s.gossipKey == nil {
		log.Warn("gossip is neither encrypted nor authenticated: set GOSSIP_KEY", "bind", c.BindAddr)
	}
}

// certChain parses the certificates of a key pair, leaf first.
func certChain(c *tls.Certificate) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
