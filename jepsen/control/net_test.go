package control

import (
	"fmt"
	"testing"
)

func TestIptablesRules(t *testing.T) {
	ip := func(i int) string { return fmt.Sprintf("10.0.0.%d", 11+i) }
	ports := Ports{Peer: 9093, Gossip: 7946}
	got, err := iptablesRules(3, ports, ip, []Cut{
		{From: 0, To: 1, Class: ClassAll},
		{From: 2, To: 1, Class: ClassPeer},
		{From: 1, To: 0, Class: ClassGossip},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"*filter\n:JEPSEN - [0:0]\n" +
			"-A JEPSEN -s 10.0.0.12 -p tcp --dport 7946 -j DROP\n-A JEPSEN -s 10.0.0.12 -p tcp --sport 7946 -j DROP\n" +
			"-A JEPSEN -s 10.0.0.12 -p udp --dport 7946 -j DROP\n-A JEPSEN -s 10.0.0.12 -p udp --sport 7946 -j DROP\nCOMMIT\n",
		"*filter\n:JEPSEN - [0:0]\n-A JEPSEN -s 10.0.0.11 -j DROP\n" +
			"-A JEPSEN -s 10.0.0.13 -p tcp --dport 9093 -j DROP\n-A JEPSEN -s 10.0.0.13 -p tcp --sport 9093 -j DROP\nCOMMIT\n",
		"*filter\n:JEPSEN - [0:0]\nCOMMIT\n", // no cut: the chain is flushed (healed)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("agent %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	for _, bad := range []Cut{{From: 0, To: 0, Class: ClassAll}, {From: 0, To: 3, Class: ClassAll}, {From: 0, To: 1, Class: "dns"}} {
		if _, err := iptablesRules(3, ports, ip, []Cut{bad}); err == nil {
			t.Errorf("cut %v accepted", bad)
		}
	}
}
