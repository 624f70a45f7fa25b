package proc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Probe checks once whether a server is ready; nil means ready.
type Probe func(ctx context.Context) error

// WaitReady runs probe every interval until it passes (nil), the process
// exits (an error wrapping ErrExited) or ctx ends (an error wrapping the
// probe's last error). Each probe call gets a context bounded by ctx.
func (p *Proc) WaitReady(ctx context.Context, every time.Duration, probe Probe) error {
	return poll(ctx, every, probe, p.done)
}

// Poll runs probe every interval until it passes or ctx ends (an error
// wrapping the probe's last error), for a server this process did not
// start.
func Poll(ctx context.Context, every time.Duration, probe Probe) error {
	return poll(ctx, every, probe, nil)
}

func poll(ctx context.Context, every time.Duration, probe Probe, exited <-chan struct{}) error {
	for {
		select {
		case <-exited:
			return ErrExited
		default:
		}
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (%v)", err, ctx.Err())
		case <-time.After(every):
		}
	}
}

// TCP is a probe that passes once addr accepts a TCP connection.
func TCP(addr string) Probe {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// HTTPOK is a probe that passes once GET url answers 200, through client
// (which should have a timeout).
func HTTPOK(client *http.Client, url string) Probe {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %s", url, resp.Status)
		}
		return nil
	}
}
