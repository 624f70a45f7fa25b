package proc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Ports are handed out from [portLow, portHigh), below the kernel's
// ephemeral range (32768 and up by default): a port the kernel hands out
// for ":0" can be taken meanwhile by any outgoing connection of a process
// running in parallel (MinIO, PostgreSQL and agent clients), which made
// servers fail to start with "address already in use". Below that range
// only another explicit bind can take it, and this process never hands out
// one port twice.
const (
	portLow  = 20000
	portHigh = 32000
)

var (
	portMu     sync.Mutex
	portsGiven = map[int]bool{}
)

// FreePort returns a port that is free for TCP and UDP on host now (gossip
// uses both) and was not handed out before by this process.
func FreePort(host string) (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if portsGiven[p] || !bindable(host, p) {
			continue
		}
		portsGiven[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port on %s between %d and %d", host, portLow, portHigh)
}

// FreeAddr is FreePort as "host:port".
func FreeAddr(host string) (string, error) {
	p, err := FreePort(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func bindable(host string, port int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
