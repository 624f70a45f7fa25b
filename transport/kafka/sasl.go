package kafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SASL: PLAIN only. The password is an API key's token (API_KEYS_FILE);
// the username is not checked (the key's name is a good choice: it is what
// the logs and Conn.Principal show). SCRAM is not offered: it needs salted
// credentials stored per key, and the keys file holds only a SHA-256 of
// each token.

const mechanismPlain = "PLAIN"

// saslState is a connection's authentication state.
type saslState struct {
	// mechanism is the mechanism a SaslHandshake chose ("" before one).
	mechanism string
	// raw: the handshake was v0, so the next frame is a bare SASL token
	// (not a SaslAuthenticate request) and the answer a bare frame.
	raw           bool
	authenticated bool
	keyHash       [sha256.Size]byte
}

// registerSASL registers SaslHandshake and SaslAuthenticate.
func (s *Server) registerSASL(add func(int16, handler)) {
	add(int16(kmsg.SASLHandshake), api(0, 1, s.handleSASLHandshake))
	add(int16(kmsg.SASLAuthenticate), api(0, 2, s.handleSASLAuthenticate))
}

// preAuthAPI lists the requests an unauthenticated connection may send.
func preAuthAPI(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return true
	}
	return false
}

// gate refuses a request an unauthenticated connection may not send when
// API keys are in force: the connection is closed, as a Kafka broker's
// SASL listener does ("Unexpected Kafka request during SASL handshake").
func (s *Server) gate(c *Conn, key int16) error {
	if s.cfg.Auth == nil || c.sasl.authenticated || preAuthAPI(key) {
		return nil
	}
	return fmt.Errorf("%w: %s before SASL authentication (API_KEYS_FILE is set: authenticate with SASL/PLAIN)", errProtocol, kmsg.NameForKey(key))
}

func (s *Server) handleSASLHandshake(_ context.Context, c *Conn, req *kmsg.SASLHandshakeRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = []string{mechanismPlain}
	if req.Mechanism != mechanismPlain {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, nil
	}
	c.sasl.mechanism = mechanismPlain
	c.sasl.raw = req.Version == 0
	return resp, nil
}

func (s *Server) handleSASLAuthenticate(_ context.Context, c *Conn, req *kmsg.SASLAuthenticateRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if c.sasl.mechanism == "" {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate before SaslHandshake")
		return resp, nil
	}
	if err := s.authenticatePlain(c, req.SASLAuthBytes); err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr(err.Error())
		c.closeAfterResponse = true // as Kafka does: no second guess on this connection
	}
	return resp, nil
}

// serveRawSASL answers the bare token that follows a v0 SaslHandshake: an
// empty frame on success; a failure closes the connection (Kafka's v0
// behaviour).
func (c *Conn) serveRawSASL(token []byte, bw *bufio.Writer) error {
	c.sasl.raw = false
	if err := c.s.authenticatePlain(c, token); err != nil {
		return fmt.Errorf("%w: SASL/PLAIN: %v", errProtocol, err)
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(nil, 0)); err != nil {
		return err
	}
	return bw.Flush()
}

// authenticatePlain checks a PLAIN message ([authzid] NUL authcid NUL
// passwd): the password must be an API key in force. Without API keys
// any credentials are accepted (nothing is checked anyway) and Principal
// stays "", as on REST without keys (it is, e.g., a producer's owner).
func (s *Server) authenticatePlain(c *Conn, msg []byte) error {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || len(parts[2]) == 0 {
		return fmt.Errorf("malformed PLAIN message (want authzid NUL username NUL password)")
	}
	c.sasl.authenticated = false
	if s.cfg.Auth == nil {
		c.sasl.authenticated = true
		return nil
	}
	p, err := s.cfg.Auth.Authenticate(string(parts[2]))
	if err != nil {
		s.cfg.Logger.Info("kafka SASL authentication failed", "remote", c.RemoteAddr().String(), "username", string(parts[1]))
		return fmt.Errorf("authentication failed: invalid API key for user %q", parts[1])
	}
	c.Principal, c.sasl.keyHash, c.sasl.authenticated = p.Key.Name, p.Key.Hash, true
	return nil
}
