package dnsd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
)

const (
	origin = "ma-societe.fr."
	serial = 2026120401
)

// LAN of the tests: the box is 127.0.1.1/24, a LAN client 127.0.1.2;
// 127.0.0.1 and 127.0.0.2 are outside (the WAN side).
var (
	lanPrefix = netip.MustParsePrefix("127.0.1.1/24")
	lanClient = netip.MustParseAddr("127.0.1.2")
	wanClient = netip.MustParseAddr("127.0.0.1")
	stranger  = netip.MustParseAddr("127.0.0.2")
)

// bigTXT is the number of TXT records of big.ma-societe.fr: more than fit
// in 1232 bytes.
const bigTXT = 20

// testZone is the zone of the tests, its serial s.
func testZone(t testing.TB, s uint32) dnszone.Zone {
	t.Helper()
	text := fmt.Sprintf(`
ma-societe.fr. 3600 IN SOA ns1.ma-societe.fr. hostmaster.ma-societe.fr. %d 7200 3600 1209600 300
ma-societe.fr. 3600 IN NS ns1.ma-societe.fr.
ma-societe.fr. 28800 IN MX 10 mail.ma-societe.fr.
ma-societe.fr. 28800 IN TXT "v=spf1 mx -all"
ns1.ma-societe.fr. 10800 IN A 192.0.2.1
mail.ma-societe.fr. 10800 IN A 192.0.2.1
mail.ma-societe.fr. 10800 IN AAAA 2001:db8::1
www.ma-societe.fr. 10800 IN CNAME web.ma-societe.fr.
web.ma-societe.fr. 10800 IN A 192.0.2.80
ext.ma-societe.fr. 10800 IN CNAME www.example.net.
loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.
loop2.ma-societe.fr. 10800 IN CNAME loop1.ma-societe.fr.
dangling.ma-societe.fr. 10800 IN CNAME nowhere.ma-societe.fr.
*.wild.ma-societe.fr. 10800 IN A 192.0.2.99
*.wild.ma-societe.fr. 10800 IN TXT "wild"
host.wild.ma-societe.fr. 10800 IN A 192.0.2.98
a.ent.ma-societe.fr. 10800 IN A 192.0.2.5
sub.ma-societe.fr. 3600 IN NS ns.sub.ma-societe.fr.
ns.sub.ma-societe.fr. 3600 IN A 192.0.2.53
`, s)
	for i := range bigTXT {
		text += fmt.Sprintf("big.ma-societe.fr. 300 IN TXT \"%02d %s\"\n", i, strings.Repeat("x", 100))
	}
	z := dnszone.Zone{Origin: origin, Serial: s, Secondaries: []netip.Addr{wanClient}}
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		z.Records = append(z.Records, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return z
}

// testSet is the Set of the tests: the zone, and the LAN view.
func testSet(t testing.TB, s uint32, setup bool) *dnszone.Set {
	return &dnszone.Set{
		Zones: []dnszone.Zone{testZone(t, s)},
		LAN: dnszone.LAN{
			Address: lanPrefix,
			Names:   []string{"mailfountain.local.", "mail.ma-societe.fr."},
			Setup:   setup,
		},
	}
}

// env is a server on 127.0.0.1, UDP and TCP on the same port.
type env struct {
	t    *testing.T
	live *dnszone.Live
	srv  *Server
	addr string
	met  *metricstest.Counts
}

// newEnv serves set with cfg (Zones and Metrics set here), Run included.
func newEnv(t *testing.T, cfg Config, set *dnszone.Set) *env {
	t.Helper()
	e := &env{t: t, live: &dnszone.Live{}, met: &metricstest.Counts{}}
	if set != nil {
		e.live.Publish(set)
	}
	cfg.Zones = e.live
	cfg.Metrics = e.met
	if cfg.NotifyPort == 0 {
		// The zone's secondary is 127.0.0.1: its NOTIFYs go to a port
		// of the test's that never answers, not to whatever listens on
		// port 53.
		sink, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		cfg.NotifyPort = uint16(sink.LocalAddr().(*net.UDPAddr).Port)
	}
	if cfg.RRL == nil {
		cfg.RRL = &RRL{} // off: the tests send many queries from one address
	}
	e.srv = New(cfg)
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for UDP and TCP")
	}
	e.addr = pc.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- e.srv.ServeUDP(ctx, pc) })
	wg.Go(func() { errs <- e.srv.ServeTCP(ctx, ln) })
	wg.Go(func() { errs <- e.srv.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("server: %v", err)
			}
		}
	})
	return e
}

// client is a miekg client over net from src.
func client(net_ string, src netip.Addr) *dns.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if net_ == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	} else {
		d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
	}
	return &dns.Client{Net: net_, Dialer: d, Timeout: 5 * time.Second, UDPSize: dns.MinMsgSize}
}

// query asks name and qtype over net from src, without EDNS0.
func (e *env) query(net_ string, src netip.Addr, name string, qtype uint16) *dns.Msg {
	e.t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return e.exchange(net_, src, m)
}

func (e *env) exchange(net_ string, src netip.Addr, m *dns.Msg) *dns.Msg {
	e.t.Helper()
	r, _, err := client(net_, src).Exchange(m, e.addr)
	if err != nil {
		e.t.Fatalf("%s %s from %s over %s: %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], src, net_, err)
	}
	return r
}

// rrStrings are the records of a section as text, the TTL included.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

// staticRecursor answers every query with an A record 198.51.100.7, or
// fails; it counts its calls.
type staticRecursor struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *staticRecursor) Resolve(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	r.mu.Lock()
	r.calls = append(r.calls, q.Question[0].Name)
	r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	resp := new(dns.Msg)
	resp.SetReply(q)
	resp.RecursionAvailable = true
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 198.51.100.7")
	resp.Answer = []dns.RR{rr}
	return resp, nil
}

func (r *staticRecursor) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}
