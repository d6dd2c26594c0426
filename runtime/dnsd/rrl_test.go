package dnsd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRRL: over the rate, responses to one network are dropped or slip
// out truncated; other networks, other responses and the LAN are not
// affected.
func TestRRL(t *testing.T) {
	t.Parallel()
	const rate, n = 5, 30
	e := newEnv(t, Config{RRL: &RRL{Rate: rate, Slip: 2, Loopback: true}}, testSet(t, serial, false))
	ask := func(src netip.Addr, name string) (answered, slipped, dropped int) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		raw := packed(t, m)
		for range n {
			out := e.rawUDP(src, raw, 300*time.Millisecond)
			if out == nil {
				dropped++
				continue
			}
			r := new(dns.Msg)
			if err := r.Unpack(out); err != nil {
				t.Fatal(err)
			}
			switch {
			case r.Truncated && len(r.Answer) == 0:
				slipped++
			case len(r.Answer) == 1:
				answered++
			default:
				t.Fatalf("answer: %v", r)
			}
		}
		return
	}
	start := time.Now()
	a, s, d := ask(wanClient, "mail.ma-societe.fr.")
	took := time.Since(start)
	// The burst, then what the rate refills meanwhile.
	if max := rate + int(took.Seconds()*rate) + 1; a < rate || a > max {
		t.Errorf("%d answered of %d in %v, want %d to %d", a, n, took, rate, max)
	}
	if s == 0 || d == 0 || s+d+a != n {
		t.Errorf("answered %d, slipped %d, dropped %d of %d", a, s, d, n)
	}
	// Another response from the same network has its own bucket...
	if r := e.query("udp", netip.MustParseAddr("127.0.0.3"), "web.ma-societe.fr.", dns.TypeA); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("another name from the network: %v", r)
	}
	// ... so has the LAN, which is not limited at all.
	if a, _, _ := ask(lanClient, "mail.ma-societe.fr."); a != n {
		t.Errorf("LAN: %d answered of %d", a, n)
	}
	got := e.met.Counts()
	if got["dns rate limited slipped"] != s || got["dns rate limited dropped"] != d || got["dns query udp dropped"] != d {
		t.Errorf("metrics %v, want %d slipped and %d dropped", got, s, d)
	}
}

// TestRRLDefaults: the default leaves loopback alone; Rate 0 is off.
func TestRRLDefaults(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	def := RRL{Rate: DefaultRRLRate, Slip: DefaultRRLSlip}
	l := newLimiter(def, func() time.Time { return now })
	if l.applies(wanClient) || !l.applies(netip.MustParseAddr("192.0.2.7")) || !l.applies(netip.MustParseAddr("2001:db8::7")) {
		t.Error("default: loopback limited, or others not")
	}
	if got := New(Config{}).rrl.cfg; got.Rate != DefaultRRLRate || got.Slip != DefaultRRLSlip || got.Loopback {
		t.Errorf("New without RRL: %+v", got)
	}
	if off := newLimiter(RRL{}, time.Now); off.applies(netip.MustParseAddr("192.0.2.7")) {
		t.Error("Rate 0 limits")
	}
	// One /24 is one bucket; the next /24 another; a /56 in IPv6.
	count := func(addrs ...string) (sent int) {
		for range 100 {
			for _, a := range addrs {
				if l.check(netip.MustParseAddr(a), dns.TypeA, 0, "x.") == send {
					sent++
				}
			}
		}
		return
	}
	if got := count("192.0.2.7", "192.0.2.200"); got != def.Rate {
		t.Errorf("one /24: %d sent, want %d", got, def.Rate)
	}
	if got := count("192.0.3.7"); got != def.Rate {
		t.Errorf("another /24: %d sent, want %d", got, def.Rate)
	}
	if got := count("2001:db8:0:1::1", "2001:db8:0:ff::1"); got != def.Rate {
		t.Errorf("one /56: %d sent, want %d", got, def.Rate)
	}
	// A second later, a second's worth again.
	now = now.Add(time.Second)
	if got := count("192.0.2.7"); got != def.Rate {
		t.Errorf("a second later: %d sent, want %d", got, def.Rate)
	}
}

// TestRRLBounded: the buckets tracked stay under MaxEntries.
func TestRRLBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(RRL{Rate: 1, MaxEntries: 160}, time.Now)
	for i := range 10_000 {
		l.check(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), dns.TypeA, 0, "x.")
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 160 {
		t.Errorf("%d buckets tracked, want at most 160", total)
	}
}
