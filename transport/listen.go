package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// The common start of the listeners' Start methods (REST, peer mux).

// startState refuses a second Start, or a Start after the component
// stopped (how: "shut down", "closed"); nil when it may start.
func startState(what string, started, stopped bool, how string) error {
	switch {
	case stopped:
		return fmt.Errorf("transport: %s already %s", what, how)
	case started:
		return fmt.Errorf("transport: %s already started", what)
	}
	return nil
}

// lacksCertificate: tc is set but can serve no certificate.
func lacksCertificate(tc *tls.Config) bool {
	return tc != nil && len(tc.Certificates) == 0 && tc.GetCertificate == nil && tc.GetConfigForClient == nil
}

// listenTCP listens on addr; the error names the listener (what).
func listenTCP(ctx context.Context, what, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: %s listen on %s: %w", what, addr, err)
	}
	return ln, nil
}
