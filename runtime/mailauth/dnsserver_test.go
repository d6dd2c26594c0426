package mailauth

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a real DNS server on 127.0.0.1 (UDP and TCP on one port)
// serving crafted records, with knobs for failures.
type testDNS struct {
	Addr string

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool     // names answered SERVFAIL
	drop     map[string]bool     // names never answered
	truncate map[string]bool     // names whose UDP answers are truncated
	lose     map[string]int      // names whose next n queries are not answered
	delay    time.Duration       // before every answer
	soa      dns.RR              // put in the authority section of negative answers
	dropAll  bool

	queries atomic.Int64
	tcp     atomic.Int64 // queries over TCP
}

// startDNS serves records given in zone-file syntax ("name. TXT \"...\"")
// until the test ends.
func startDNS(t testing.TB, records ...string) *testDNS {
	t.Helper()
	z := &testDNS{
		rrs:      map[string][]dns.RR{},
		servfail: map[string]bool{},
		drop:     map[string]bool{},
		truncate: map[string]bool{},
		lose:     map[string]int{},
	}
	z.add(t, records...)
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		z.Addr = pc.LocalAddr().String()
		var wg sync.WaitGroup
		var servers []*dns.Server
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			wg.Go(func() { _ = s.ActivateAndServe() })
			<-started
			servers = append(servers, s)
		}
		t.Cleanup(func() {
			for _, s := range servers {
				_ = s.Shutdown()
			}
			wg.Wait()
		})
		return z
	}
	t.Fatal("no free UDP+TCP port pair")
	return nil
}

func (z *testDNS) add(t testing.TB, records ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil || rr == nil {
			t.Fatalf("record %q: %v", r, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
}

func (z *testDNS) set(m map[string]bool, names ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, n := range names {
		m[strings.ToLower(dns.Fqdn(n))] = true
	}
}

func (z *testDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.queries.Add(1)
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		z.tcp.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	z.mu.Lock()
	delay, dropAll, drop, soa := z.delay, z.dropAll, z.drop[name], z.soa
	servfail, trunc := z.servfail[name], z.truncate[name]
	if z.lose[name] > 0 {
		z.lose[name]--
		drop = true
	}
	rrs := z.rrs[name]
	var target []dns.RR
	exists := len(rrs) > 0
	if !exists { // an empty non-terminal exists too
		for n := range z.rrs {
			if strings.HasSuffix(n, "."+name) {
				exists = true
				break
			}
		}
	}
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
			target = append(target, rr)
			for _, t := range z.rrs[strings.ToLower(c.Target)] {
				if t.Header().Rrtype == q.Qtype {
					target = append(target, t)
				}
			}
		} else if rr.Header().Rrtype == q.Qtype {
			target = append(target, rr)
		}
	}
	z.mu.Unlock()

	if delay > 0 {
		time.Sleep(delay)
	}
	if dropAll || drop {
		return
	}
	switch {
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case !exists:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = target
	}
	if soa != nil && m.Rcode != dns.RcodeServerFailure && len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && trunc {
		m.Truncated = true
		m.Answer = nil
	}
	_ = w.WriteMsg(m)
}
