package wanlink

import (
	"net/netip"
	"testing"
	"time"
)

func TestDescribe(t *testing.T) {
	now := time.Date(2026, 12, 4, 16, 17, 0, 0, time.UTC)
	at := func(h, m, s int) time.Time { return time.Date(2026, 12, 4, h, m, s, 0, time.UTC) }
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	for _, tc := range []struct {
		name string
		s    Status
		want string
	}{
		{"dhcp lease", Status{Method: "dhcp", Port: "wan", State: State{Up: true, Interface: "wan", Address: pfx("10.77.0.53/24"), Gateway: addr("10.77.0.1"),
			DNS: []netip.Addr{addr("10.77.0.1")}, Since: at(16, 16, 8), Until: at(16, 18, 8)}},
			"dhcp on wan: 10.77.0.53/24 via 10.77.0.1, DNS 10.77.0.1 (since 16:16:08, lease until 16:18:08)"},
		{"dhcp, no server, next try due", Status{Method: "dhcp", Port: "wan", State: State{Interface: "wan", Detail: "no DHCP server answered on wan", Until: now.Add(4 * time.Second)}},
			"dhcp on wan: down (no DHCP server answered on wan; trying again in 4s)"},
		{"the next try passed: trying now", Status{Method: "dhcp", Port: "wan", State: State{Interface: "wan", Detail: "no DHCP server answered on wan", Until: now.Add(-time.Second)}},
			"dhcp on wan: down (no DHCP server answered on wan)"},
		{"pppoe down", Status{Method: "pppoe", Port: "wan", Account: "fti/abc@fai", State: State{Interface: "ppp0", Detail: "pppd exited with status 1: a fatal error", Until: now.Add(2600 * time.Millisecond)}},
			"pppoe on wan as fti/abc@fai: down (pppd exited with status 1: a fatal error; trying again in 3s)"},
		{"pppoe session", Status{Method: "pppoe", Port: "wan", Account: "u", State: State{Up: true, Interface: "ppp0", Address: pfx("198.51.100.7/32"), Gateway: addr("198.51.100.1"),
			DNS: []netip.Addr{addr("198.51.100.53"), addr("198.51.100.54")}, Since: at(16, 0, 0)}},
			"pppoe on wan as u: 198.51.100.7/32 on ppp0 via 198.51.100.1, DNS 198.51.100.53 198.51.100.54 (since 16:00:00)"},
		{"down, nothing to say but since when", Status{Method: "pppoe", Port: "wan", Account: "u", State: State{Interface: "ppp0", Since: at(16, 10, 0)}},
			"pppoe on wan as u: down (since 16:10:00)"},
		{"starting", Status{Method: "dhcp", Port: "eth0", State: State{Detail: "starting"}}, "dhcp on eth0: down (starting)"},
		{"static", Status{Method: "static", Port: "wan", State: State{Up: true, Interface: "wan", Address: pfx("203.0.113.10/24"), Gateway: addr("203.0.113.1")}},
			"static on wan: 203.0.113.10/24 via 203.0.113.1"},
		{"server mode", Status{Method: "server", Port: "br-lan", State: State{Up: true, Interface: "br-lan", Address: pfx("192.168.10.5/24")}},
			"server mode on br-lan: 192.168.10.5/24"},
	} {
		if got := tc.s.Describe(now); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// Applied leaves out what only the status shows.
func TestApplied(t *testing.T) {
	s := State{Up: true, Address: netip.MustParsePrefix("10.0.0.2/24"), Interface: "wan", Since: time.Now(), Detail: "x", Until: time.Now()}
	a := s.Applied()
	if !a.Since.IsZero() || a.Detail != "" || !a.Until.IsZero() || a.Address != s.Address || !a.Up || a.Interface != "wan" {
		t.Errorf("Applied: %+v", a)
	}
}
