package forward

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a real DNS server on 127.0.0.1 (UDP and TCP on one port)
// playing a recursive resolver: it answers from records given in
// zone-file syntax, with knobs for failures and forgeries.
type upstream struct {
	t    testing.TB
	addr netip.AddrPort

	mu    sync.Mutex
	rrs   map[string][]dns.RR // by lower-case owner
	soa   dns.RR              // in the authority section of negative answers; nil: none
	mode  string              // see handle
	delay time.Duration       // before every answer
	last  *dns.Msg            // the last query received
	// handler, if not nil, answers instead of the upstream's logic.
	handler dns.HandlerFunc

	queries atomic.Int64
	tcp     atomic.Int64 // queries over TCP
}

// startUpstream serves records until the test ends.
func startUpstream(t testing.TB, records ...string) *upstream {
	t.Helper()
	u := &upstream{t: t, rrs: map[string][]dns.RR{}}
	u.add(records...)
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
		u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
		var wg sync.WaitGroup
		var servers []*dns.Server
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
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
		return u
	}
	t.Fatal("no free UDP+TCP port pair")
	return nil
}

func (u *upstream) add(records ...string) {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			u.t.Fatalf("record %q: %v", s, err)
		}
		if soa, ok := rr.(*dns.SOA); ok {
			u.soa = soa
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		u.rrs[name] = append(u.rrs[name], rr)
	}
}

func (u *upstream) set(mode string, delay time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode, u.delay = mode, delay
}

func (u *upstream) setHandler(h dns.HandlerFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handler = h
}

func (u *upstream) lastQuery() *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// answer is the real answer to r: the records of the name and type,
// NODATA or NXDOMAIN with the SOA.
func (u *upstream) answer(r *dns.Msg) *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	q := r.Question[0]
	rrs, exists := u.rrs[strings.ToLower(q.Name)]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if u.soa != nil {
			m.Ns = append(m.Ns, dns.Copy(u.soa))
		}
	}
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(udpSize, o.Do())
		if o.Do() {
			m.AuthenticatedData = true
		}
	}
	return m
}

// ServeDNS answers per mode:
//
//	""               the answer
//	drop             nothing
//	servfail         SERVFAIL; refused: REFUSED; formerr: FORMERR
//	truncate         over UDP an empty answer with TC; over TCP the answer
//	forge-question   first a response to another question, then the answer
//	forge-type       first a response of another type, then the answer
//	forge-id         first a response with another ID, then the answer
//	forge-query      first the query itself (not a response), then the answer
//	forge-garbage    first bytes that do not parse, then the answer
//	forge-addr       first a forged answer from another socket, then the answer
//	forge-only       only a response to another question
func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	u.queries.Add(1)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	if tcp {
		u.tcp.Add(1)
	}
	u.mu.Lock()
	mode, delay, handler := u.mode, u.delay, u.handler
	u.last = r.Copy()
	u.mu.Unlock()
	if handler != nil {
		handler(w, r)
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	forged := func() *dns.Msg {
		m := u.answer(r)
		m.Answer = []dns.RR{mustRR(u.t, r.Question[0].Name+" 3600 IN A 6.6.6.6")}
		m.Rcode = dns.RcodeSuccess
		return m
	}
	real := u.answer(r)
	switch mode {
	case "drop":
		return
	case "servfail", "refused", "formerr":
		m := new(dns.Msg)
		m.SetRcode(r, map[string]int{"servfail": dns.RcodeServerFailure, "refused": dns.RcodeRefused, "formerr": dns.RcodeFormatError}[mode])
		_ = w.WriteMsg(m)
		return
	case "truncate":
		if !tcp {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
	case "forge-question", "forge-only":
		m := forged()
		m.Question[0].Name = "evil.example."
		m.Answer[0].Header().Name = "evil.example."
		_ = w.WriteMsg(m)
		if mode == "forge-only" {
			return
		}
	case "forge-type":
		m := forged()
		m.Question[0].Qtype = dns.TypeAAAA
		_ = w.WriteMsg(m)
	case "forge-id":
		m := forged()
		m.Id = r.Id + 1
		_ = w.WriteMsg(m)
	case "forge-query":
		m := forged()
		m.Response = false
		_ = w.WriteMsg(m)
	case "forge-garbage":
		_, _ = w.Write([]byte{0, 1, 2})
		_, _ = w.Write([]byte{byte(r.Id >> 8), byte(r.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 7, 'e', 'x'})
	case "forge-addr":
		b, err := forged().Pack()
		if err != nil {
			u.t.Error(err)
			return
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			u.t.Error(err)
			return
		}
		_, _ = pc.WriteTo(b, w.RemoteAddr())
		pc.Close()
	}
	if strings.HasPrefix(mode, "forge-") {
		time.Sleep(50 * time.Millisecond) // the forgery first
	}
	_ = w.WriteMsg(real)
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("record %q: %v", s, err)
	}
	return rr
}
