package transport

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// Fuzzing of the cluster-secret challenge-response. Nonces come from a
// fixed source so the harness can, when asked (fix), replace the peer's
// proof by the correct one and check that the code accepts exactly the
// handshakes it should, not merely that it refuses random bytes.

var fuzzSecret = []byte("fuzzing cluster secret, 32 bytes")

const fuzzSelf = "10.0.0.1:7000"

// fixedRand yields the same byte forever.
type fixedRand byte

func (r fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// scriptConn reads a scripted peer's bytes and records what is written.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }

func nonceOf(b byte) []byte { return bytes.Repeat([]byte{b}, peerNonceLen) }

// FuzzPeerAcceptor drives the acceptor's side with an arbitrary handshake,
// nonce and proof (and TLS binding). It must never panic, refuse with
// ErrPeerAuth, answer a challenge only for a handshake that dialed this
// agent, and accept exactly when the proof is right, the dialed address is
// its own and the claimed dialer is not itself.
func FuzzPeerAcceptor(f *testing.F) {
	hello := func(from, to string) []byte {
		return appendPeerHandshake(nil, peerHello{tag: peerTagRPC, auth: peerAuthProof, from: from, to: to})
	}
	f.Add(append(hello("10.0.0.2:7000", fuzzSelf), nonceOf(1)...), []byte(nil), true)
	f.Add(append(hello("10.0.0.2:7000", "10.0.0.3:7000"), nonceOf(1)...), []byte(nil), true)
	f.Add(append(hello(fuzzSelf, fuzzSelf), nonceOf(1)...), []byte("binding"), true)
	f.Add(append(append(hello("10.0.0.2:7000", "10.0.0.1:7000"), nonceOf(1)...), make([]byte, peerMACLen)...), []byte(nil), false)
	f.Add(hello("a:1", fuzzSelf)[:5], []byte(nil), false)
	f.Fuzz(func(t *testing.T, in, binding []byte, fix bool) {
		r := bytes.NewReader(in)
		h, err := readPeerHandshake(r)
		if err != nil || h.auth != peerAuthProof {
			return
		}
		rest := in[len(in)-r.Len():]
		nonceA := nonceOf(0xA5)
		tr := func(nonceD []byte) peerTranscript {
			return peerTranscript{tag: h.tag, from: h.from, to: h.to, nonceD: nonceD, nonceA: nonceA, binding: binding}
		}
		if fix && len(rest) >= peerNonceLen {
			rest = append(append([]byte(nil), rest[:peerNonceLen]...), tr(rest[:peerNonceLen]).mac(fuzzSecret, roleDialer)...)
		}
		a := &peerAuth{secret: fuzzSecret, self: fuzzSelf, rand: fixedRand(0xA5)}
		conn := &scriptConn{in: bytes.NewReader(rest)}
		err = a.accept(conn, h, binding)
		want := fix && len(rest) >= peerNonceLen && sameAddr(h.to, fuzzSelf) && !sameAddr(h.from, fuzzSelf)
		if (err == nil) != want {
			t.Fatalf("accept(%+v, fix=%v) = %v, want success %v", h, fix, err, want)
		}
		if err != nil && !errors.Is(err, ErrPeerAuth) {
			t.Fatalf("error %v does not wrap ErrPeerAuth", err)
		}
		if out := conn.out.Bytes(); len(out) > 0 {
			if !sameAddr(h.to, fuzzSelf) || sameAddr(h.from, fuzzSelf) {
				t.Fatalf("answered the challenge of a handshake from %s to %s", h.from, h.to)
			}
			if want := append(nonceOf(0xA5), tr(rest[:peerNonceLen]).mac(fuzzSecret, roleAcceptor)...); !bytes.Equal(out, want) {
				t.Fatalf("answer %x, want %x", out, want)
			}
		}
		if len(a.nonces.m) != 0 {
			t.Fatalf("%d nonces left in flight", len(a.nonces.m))
		}
	})
}

// FuzzPeerDialer drives the dialer's side against an arbitrary answer. It
// must never panic, write a handshake that parses back to what it meant,
// send its own proof only after a correct acceptor proof, and refuse a
// reflected nonce.
func FuzzPeerDialer(f *testing.F) {
	f.Add("10.0.0.2:7000", byte(peerTagRaft), nonceOf(7), []byte(nil), true)
	f.Add("10.0.0.2:7000", byte(peerTagRPC), nonceOf(0x5A), []byte(nil), true)
	f.Add("[::1]:7000", byte(peerTagRPC), append(nonceOf(7), make([]byte, peerMACLen)...), []byte("b"), false)
	f.Add("agent-2:7000", byte(peerTagRaft), []byte{1, 2, 3}, []byte(nil), true)
	f.Fuzz(func(t *testing.T, target string, tag byte, answer, binding []byte, fix bool) {
		if tag != peerTagRaft && tag != peerTagRPC {
			return
		}
		if _, _, err := net.SplitHostPort(target); err != nil || len(target) > maxPeerAddrLen {
			return // dial is only ever called with a host:port
		}
		nonceD := nonceOf(0x5A)
		tr := func(nonceA []byte) peerTranscript {
			return peerTranscript{tag: tag, from: fuzzSelf, to: target, nonceD: nonceD, nonceA: nonceA, binding: binding}
		}
		if fix && len(answer) >= peerNonceLen {
			answer = append(append([]byte(nil), answer[:peerNonceLen]...), tr(answer[:peerNonceLen]).mac(fuzzSecret, roleAcceptor)...)
		}
		a := &peerAuth{secret: fuzzSecret, self: fuzzSelf, rand: fixedRand(0x5A)}
		conn := &scriptConn{in: bytes.NewReader(answer)}
		err := a.dial(conn, tag, target, binding)
		want := fix && len(answer) >= peerNonceLen && !bytes.Equal(answer[:peerNonceLen], nonceD)
		if (err == nil) != want {
			t.Fatalf("dial(%q, fix=%v) = %v, want success %v", target, fix, err, want)
		}
		if err != nil && !errors.Is(err, ErrPeerAuth) {
			t.Fatalf("error %v does not wrap ErrPeerAuth", err)
		}
		out := bytes.NewReader(conn.out.Bytes())
		h, herr := readPeerHandshake(out)
		if herr != nil || h != (peerHello{tag: tag, auth: peerAuthProof, from: fuzzSelf, to: target}) {
			t.Fatalf("wrote handshake %+v (%v)", h, herr)
		}
		sent := make([]byte, out.Len())
		_, _ = out.Read(sent)
		wantSent := nonceD
		if err == nil {
			wantSent = append(append([]byte(nil), nonceD...), tr(answer[:peerNonceLen]).mac(fuzzSecret, roleDialer)...)
		}
		if !bytes.Equal(sent, wantSent) {
			t.Fatalf("after the handshake sent %x, want %x", sent, wantSent)
		}
		if len(a.nonces.m) != 0 {
			t.Fatalf("%d nonces left in flight", len(a.nonces.m))
		}
	})
}
