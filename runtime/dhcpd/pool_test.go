package dhcpd

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func testConfig(start, end string, res ...Reservation) *Config {
	return &Config{
		Enabled:      true,
		Server:       netip.MustParsePrefix("192.168.1.1/24"),
		Start:        netip.MustParseAddr(start),
		End:          netip.MustParseAddr(end),
		LeaseTime:    time.Hour,
		Reservations: res,
	}
}

func mac(last byte) string { return net.HardwareAddr{2, 0, 0, 0, 0, last}.String() }

func reserve(last byte, addr string) Reservation {
	return Reservation{MAC: net.HardwareAddr{2, 0, 0, 0, 0, last}, Addr: netip.MustParseAddr(addr)}
}

// step is one operation on the pool and what it must give.
type step struct {
	op   string // "offer", "bind", "release", "decline", "later" (the clock moves by d)
	mac  byte
	addr string // requested or bound; "" for none
	d    time.Duration
	want string // the address offered or bound; "" for none (refused)
}

func TestPool(t *testing.T) {
	tests := []struct {
		name  string
		cfg   *Config
		steps []step
	}{
		{"first free, in order", testConfig("192.168.1.100", "192.168.1.102"), []step{
			{op: "offer", mac: 1, want: "192.168.1.100"},
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "offer", mac: 2, want: "192.168.1.101"},
			{op: "offer", mac: 2, want: "192.168.1.101"}, // the same offer again
		}},
		{"the requested address when free", testConfig("192.168.1.100", "192.168.1.110"), []step{
			{op: "offer", mac: 1, addr: "192.168.1.105", want: "192.168.1.105"},
			{op: "offer", mac: 2, addr: "192.168.1.105", want: "192.168.1.100"}, // offered to 1
			{op: "offer", mac: 3, addr: "192.168.1.200", want: "192.168.1.101"}, // outside the range
			{op: "offer", mac: 4, addr: "192.168.1.1", want: "192.168.1.102"},   // the box
		}},
		{"a device gets its address back", testConfig("192.168.1.100", "192.168.1.110"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.107", want: "192.168.1.107"},
			{op: "later", d: 2 * time.Hour}, // expired
			{op: "offer", mac: 1, want: "192.168.1.107"},
			{op: "offer", mac: 2, addr: "192.168.1.107", want: "192.168.1.100"},
		}},
		{"expired leases are reused last, the oldest first", testConfig("192.168.1.100", "192.168.1.102"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.101", want: "192.168.1.101"},
			{op: "later", d: time.Minute},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "later", d: 2 * time.Hour},              // both expired, 1's first
			{op: "offer", mac: 3, want: "192.168.1.102"}, // never leased
			{op: "bind", mac: 3, addr: "192.168.1.102", want: "192.168.1.102"},
			{op: "offer", mac: 4, want: "192.168.1.101"}, // 1's, expired the longest ago
			{op: "bind", mac: 4, addr: "192.168.1.101", want: "192.168.1.101"},
			{op: "offer", mac: 1, want: "192.168.1.100"}, // its own went to 4
		}},
		{"exhausted: no offer", testConfig("192.168.1.100", "192.168.1.101"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "bind", mac: 2, addr: "192.168.1.101", want: "192.168.1.101"},
			{op: "offer", mac: 3, want: ""},
			{op: "bind", mac: 3, addr: "192.168.1.100", want: ""},
			{op: "release", mac: 2, addr: "192.168.1.101", want: "192.168.1.101"},
			{op: "offer", mac: 3, want: "192.168.1.101"},
		}},
		{"offers do not exhaust the range", testConfig("192.168.1.100", "192.168.1.101"), []step{
			{op: "offer", mac: 1, want: "192.168.1.100"},
			{op: "offer", mac: 2, want: "192.168.1.101"},
			{op: "offer", mac: 3, want: "192.168.1.100"}, // the oldest offer
			{op: "bind", mac: 3, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "bind", mac: 1, addr: "192.168.1.100", want: ""}, // 3 has it now
		}},
		{"another's active lease is refused", testConfig("192.168.1.100", "192.168.1.110"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: ""},
			{op: "bind", mac: 2, addr: "192.168.1.50", want: ""}, // outside the range
			{op: "later", d: 2 * time.Hour},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: "192.168.1.100"}, // expired
			{op: "offer", mac: 1, want: "192.168.1.101"},
		}},
		{"a renewal moves the expiry", testConfig("192.168.1.100", "192.168.1.110"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "later", d: 50 * time.Minute},
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "later", d: 50 * time.Minute},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: ""}, // still 1's
		}},
		{"a device moving to another address frees the old one", testConfig("192.168.1.100", "192.168.1.101"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "bind", mac: 1, addr: "192.168.1.101", want: "192.168.1.101"},
			{op: "offer", mac: 2, want: "192.168.1.100"},
		}},
		{"reservations", testConfig("192.168.1.100", "192.168.1.102", reserve(9, "192.168.1.20"), reserve(8, "192.168.1.101")), []step{
			{op: "offer", mac: 9, addr: "192.168.1.100", want: "192.168.1.20"},
			{op: "bind", mac: 9, addr: "192.168.1.100", want: ""}, // not its reservation
			{op: "bind", mac: 9, addr: "192.168.1.20", want: "192.168.1.20"},
			{op: "offer", mac: 1, want: "192.168.1.100"},
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "offer", mac: 2, want: "192.168.1.102"}, // .101 is 8's
			{op: "bind", mac: 2, addr: "192.168.1.101", want: ""},
			{op: "bind", mac: 2, addr: "192.168.1.20", want: ""},
			{op: "bind", mac: 8, addr: "192.168.1.101", want: "192.168.1.101"},
		}},
		{"decline holds the address back", testConfig("192.168.1.100", "192.168.1.101"), []step{
			{op: "offer", mac: 1, want: "192.168.1.100"},
			{op: "decline", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "offer", mac: 1, want: "192.168.1.101"},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: ""},
			{op: "decline", mac: 3, addr: "192.168.1.101", want: ""}, // not 3's
			{op: "later", d: declineHold},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: "192.168.1.100"},
		}},
		{"release only of one's own lease", testConfig("192.168.1.100", "192.168.1.101"), []step{
			{op: "bind", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "release", mac: 2, addr: "192.168.1.100", want: ""},
			{op: "bind", mac: 2, addr: "192.168.1.100", want: ""},
			{op: "release", mac: 1, addr: "192.168.1.100", want: "192.168.1.100"},
			{op: "offer", mac: 1, want: "192.168.1.100"}, // still remembered as 1's
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool()
			now := t0
			p.setConfig(tt.cfg, now)
			for i, s := range tt.steps {
				var got string
				var a netip.Addr
				if s.addr != "" {
					a = netip.MustParseAddr(s.addr)
				}
				switch s.op {
				case "later":
					now = now.Add(s.d)
					continue
				case "offer":
					if x, ok := p.offer(mac(s.mac), a, now); ok {
						got = x.String()
					}
				case "bind":
					if l, ok := p.bind(mac(s.mac), a, "", now); ok {
						got = l.Addr.String()
					}
				case "release":
					if p.release(mac(s.mac), a, now) {
						got = s.addr
					}
				case "decline":
					if p.decline(mac(s.mac), a, now) {
						got = s.addr
					}
				}
				if got != s.want {
					t.Fatalf("step %d: %s by %s of %q = %q, want %q", i, s.op, mac(s.mac), s.addr, got, s.want)
				}
			}
		})
	}
}

// TestPoolBounded floods the pool with DISCOVERs and REQUESTs of random
// MACs: it never holds more than one lease and one offer per address.
func TestPoolBounded(t *testing.T) {
	p := newPool()
	p.setConfig(testConfig("192.168.1.2", "192.168.1.254"), t0)
	now := t0
	for i := range 3000 {
		m := net.HardwareAddr{2, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 1}.String()
		if a, ok := p.offer(m, netip.Addr{}, now); ok && i%2 == 0 {
			p.bind(m, a, "", now)
		}
		now = now.Add(time.Millisecond)
	}
	if len(p.byAddr) > 253 || len(p.byMAC) > 253 || len(p.offers) > 253 {
		t.Errorf("pool holds %d leases, %d MACs, %d offers for 253 addresses", len(p.byAddr), len(p.byMAC), len(p.offers))
	}
	if active, free := p.counts(now); active != 253 || free != 0 {
		t.Errorf("counts: %d active, %d free; want 253, 0", active, free)
	}
}

func TestPoolConfigChange(t *testing.T) {
	p := newPool()
	p.setConfig(testConfig("192.168.1.100", "192.168.1.110"), t0)
	p.bind(mac(1), netip.MustParseAddr("192.168.1.105"), "", t0)
	p.bind(mac(2), netip.MustParseAddr("192.168.1.106"), "", t0)
	p.release(mac(2), netip.MustParseAddr("192.168.1.106"), t0)
	// The range shrinks: the active lease outside stays until it
	// expires, but is not renewed; the expired one is forgotten.
	p.setConfig(testConfig("192.168.1.100", "192.168.1.104"), t0)
	if len(p.byAddr) != 1 {
		t.Errorf("leases after the change: %v", p.leases())
	}
	if _, ok := p.bind(mac(1), netip.MustParseAddr("192.168.1.105"), "", t0); ok {
		t.Error("a lease outside the new range was renewed")
	}
	if a, _ := p.offer(mac(1), netip.Addr{}, t0); a != netip.MustParseAddr("192.168.1.100") {
		t.Errorf("offer after the change: %s", a)
	}
	// Another LAN: every lease goes.
	cfg := testConfig("10.0.0.100", "10.0.0.110")
	cfg.Server = netip.MustParsePrefix("10.0.0.1/24")
	p.setConfig(cfg, t0)
	if len(p.byAddr) != 0 || len(p.byMAC) != 0 {
		t.Errorf("leases of the old LAN kept: %v", p.leases())
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter()
	n := 0
	for range 100 {
		if l.allow(mac(1), t0) {
			n++
		}
	}
	if n != perMAC {
		t.Errorf("one MAC: %d answered, want %d", n, perMAC)
	}
	n = 0
	for i := range 10000 {
		if l.allow(net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}.String(), t0) {
			n++
		}
	}
	if n != perWindow-perMAC || len(l.byMAC) > perWindow {
		t.Errorf("many MACs: %d answered, %d counted; want %d, at most %d", n, len(l.byMAC), perWindow-perMAC, perWindow)
	}
	if !l.allow(mac(1), t0.Add(limitWindow)) {
		t.Error("the next window refuses")
	}
}
