package kafka

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handler serves one API between minV and maxV. fn returns the response
// (nil: send none, e.g. Produce with acks=0) or an error that closes the
// connection (a protocol violation); failures the client should see go in
// the response's error codes.
type handler struct {
	minV, maxV int16
	fn         func(ctx context.Context, c *Conn, req kmsg.Request) (kmsg.Response, error)
}

// api adapts a typed handler function to the dispatch table.
func api[R kmsg.Request](minV, maxV int16, fn func(context.Context, *Conn, R) (kmsg.Response, error)) handler {
	return handler{minV: minV, maxV: maxV, fn: func(ctx context.Context, c *Conn, req kmsg.Request) (kmsg.Response, error) {
		return fn(ctx, c, req.(R))
	}}
}

// dispatchTable lists every API this broker serves; ApiVersions advertises
// exactly these keys and version ranges. Each API family registers in its
// own function so that they can be grown independently.
func (s *Server) dispatchTable() map[int16]handler {
	t := map[int16]handler{}
	add := func(key int16, h handler) {
		if _, dup := t[key]; dup {
			panic(fmt.Sprintf("kafka: API %d registered twice", key))
		}
		t[key] = h
	}
	s.registerCore(add)
	s.registerSASL(add)
	s.registerAdmin(add)
	s.registerGroups(add)
	s.registerData(add)
	return t
}

// registerCore registers ApiVersions and Metadata.
func (s *Server) registerCore(add func(int16, handler)) {
	add(int16(kmsg.ApiVersions), api(0, 4, s.handleApiVersions))
	add(int16(kmsg.Metadata), api(0, 13, s.handleMetadata))
}

// handle decodes the body of one request and runs its handler.
func (s *Server) handle(ctx context.Context, c *Conn, hdr requestHeader, body []byte) (_ kmsg.Response, err error) {
	defer s.recoverRequest(hdr.key, &err)
	h, ok := s.handlers[hdr.key]
	if !ok {
		return nil, fmt.Errorf("%w: API key %d (%s) is not supported", errProtocol, hdr.key, kmsg.NameForKey(hdr.key))
	}
	if hdr.version < h.minV || hdr.version > h.maxV {
		if hdr.key == int16(kmsg.ApiVersions) {
			return s.unsupportedApiVersions(), nil
		}
		return nil, fmt.Errorf("%w: %s v%d is not supported (v%d-v%d)", errProtocol, kmsg.NameForKey(hdr.key), hdr.version, h.minV, h.maxV)
	}
	if err := s.gate(c, hdr.key); err != nil {
		return nil, err
	}
	req := kmsg.RequestForKey(hdr.key)
	req.SetVersion(hdr.version)
	if req.IsFlexible() {
		if body, err = skipTags(body); err != nil {
			return nil, err
		}
	}
	if err := req.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %v", errProtocol, kmsg.NameForKey(hdr.key), hdr.version, err)
	}
	resp, err := h.fn(ctx, c, req)
	if err != nil || resp == nil {
		return nil, err
	}
	resp.SetVersion(hdr.version)
	return resp, nil
}

// apiKeys lists the served APIs sorted by key, for ApiVersions.
func (s *Server) apiKeys() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(s.handlers))
	for key, h := range s.handlers {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, h.minV, h.maxV
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
