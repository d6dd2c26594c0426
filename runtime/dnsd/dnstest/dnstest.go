// Package dnstest is a DNS server for tests, like net/http/httptest: a
// real miekg/dns server on 127.0.0.1 (UDP and TCP on one ephemeral port)
// that answers from records the test sets, and changes while it runs,
// until the test ends.
//
// It answers as a plain server of RFC 1034/1035 would: the records of the
// name and type (ANY: all of them; a CNAME followed within its records), a
// name with records or records below it (an empty non-terminal) exists
// (NODATA), any other is NXDOMAIN, and negative answers carry the SOA of
// the closest enclosing zone it holds (RFC 2308). It echoes EDNS0 (RFC
// 6891) and truncates UDP answers to the client's size (TC). Special
// behaviours (delays, drops, forgeries, flags) are the test's, through
// SetHandler; Answer and Reply give it the plain answer to build on.
//
// Only tests import it: the _test.go files, tests/ and bench/.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// udpSize is the EDNS0 size of its answers.
const udpSize = 1232

// Server is a DNS server on loopback. Its methods are safe for concurrent
// use, also while it serves.
type Server struct {
	t    testing.TB
	addr string

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lower-case owner
	rcodes  map[string]int      // by lower-case name: answered with this code
	handler dns.HandlerFunc
	queried map[string]int // "name. TYPE" (lower case) → queries

	queries atomic.Int64
	tcp     atomic.Int64
}

// New starts a server with records (see Add) that serves until the test
// ends.
func New(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{t: t, rrs: map[string][]dns.RR{}, rcodes: map[string]int{}, queried: map[string]int{}}
	s.Add(records...)
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the TCP port is taken: try another pair
			continue
		}
		s.addr = pc.LocalAddr().String()
		var wg sync.WaitGroup
		servers := []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}}
		for _, srv := range servers {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			wg.Go(func() { _ = srv.ActivateAndServe() })
			<-started
		}
		t.Cleanup(func() {
			for _, srv := range servers {
				_ = srv.Shutdown()
			}
			wg.Wait()
		})
		return s
	}
	t.Fatal("dnstest: no free UDP+TCP port pair")
	return nil
}

// Addr is the server's address, "127.0.0.1:port", the same for UDP and
// TCP.
func (s *Server) Addr() string { return s.addr }

// Add adds records in zone-file syntax: each string is a record
// ("a.example. MX 10 mx.a.example.", TTL 3600 if none) or a whole zone
// text with $ORIGIN and $TTL. A record that does not parse fails the test.
func (s *Server) Add(records ...string) {
	s.t.Helper()
	s.AddRR(Parse(s.t, records...)...)
}

// AddRR adds records.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
	}
}

// Set replaces the records of name of type typ (dns.TypeMX...) with
// records (see Add), which must be of that name and type; none removes
// them.
func (s *Server) Set(name string, typ uint16, records ...string) {
	s.t.Helper()
	rrs := Parse(s.t, records...)
	name = strings.ToLower(dns.Fqdn(name))
	for _, rr := range rrs {
		if h := rr.Header(); strings.ToLower(h.Name) != name || h.Rrtype != typ {
			s.t.Fatalf("dnstest: set %s %s: record %q is of another name or type", name, dns.TypeToString[typ], rr)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []dns.RR
	for _, rr := range s.rrs[name] {
		if rr.Header().Rrtype != typ {
			kept = append(kept, rr)
		}
	}
	s.rrs[name] = append(kept, rrs...)
	if len(s.rrs[name]) == 0 {
		delete(s.rrs, name)
	}
}

// Records returns the records served, in no particular order.
func (s *Server) Records() []dns.RR {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dns.RR
	for _, rrs := range s.rrs {
		out = append(out, rrs...)
	}
	return out
}

// SetRcode makes the server answer every query for names with rcode
// (dns.RcodeServerFailure...) and no records; dns.RcodeSuccess answers
// from the records again.
func (s *Server) SetRcode(rcode int, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		n = strings.ToLower(dns.Fqdn(n))
		if rcode == dns.RcodeSuccess {
			delete(s.rcodes, n)
		} else {
			s.rcodes[n] = rcode
		}
	}
}

// SetHandler makes h answer every query instead of the records (h may call
// Reply or Answer for them); nil answers from the records again. Queries
// are counted either way.
func (s *Server) SetHandler(h dns.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

// Queries is how many queries the server received; TCPQueries, how many
// of them over TCP.
func (s *Server) Queries() int    { return int(s.queries.Load()) }
func (s *Server) TCPQueries() int { return int(s.tcp.Load()) }

// QueriesFor is how many queries the server received for name and type.
func (s *Server) QueriesFor(name string, typ uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queried[strings.ToLower(dns.Fqdn(name))+" "+dns.TypeToString[typ]]
}

// ServeDNS counts the query and answers it with the handler, if any, else
// with Reply.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.queries.Add(1)
	if IsTCP(w) {
		s.tcp.Add(1)
	}
	s.mu.Lock()
	if len(r.Question) > 0 {
		q := r.Question[0]
		s.queried[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]++
	}
	h := s.handler
	s.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	s.Reply(w, r)
}

// Reply writes the Answer to r, over UDP truncated to the client's size.
func (s *Server) Reply(w dns.ResponseWriter, r *dns.Msg) {
	_ = w.WriteMsg(Truncate(w, r, s.Answer(r)))
}

// Truncate truncates m, the answer to r, to r's UDP size (512 without
// EDNS0) when w is UDP.
func Truncate(w dns.ResponseWriter, r, m *dns.Msg) *dns.Msg {
	if !IsTCP(w) {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	return m
}

// IsTCP reports whether w answers over TCP.
func IsTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// Answer is the server's answer to r from its records (see the package
// doc), before truncation.
func (s *Server) Answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(udpSize, o.Do())
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode, ok := s.rcodes[name]; ok {
		m.Rcode = rcode
		return m
	}
	exists := len(s.rrs[name]) > 0
	for n := range s.rrs {
		if !exists && strings.HasSuffix(n, "."+name) {
			exists = true // an empty non-terminal
		}
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	owner := q.Name // the case of the question (0x20)
	for range 8 {   // a CNAME chain, at most 8 long
		next := ""
		for _, rr := range s.rrs[name] {
			t := rr.Header().Rrtype
			if t == q.Qtype || q.Qtype == dns.TypeANY || t == dns.TypeCNAME {
				c := dns.Copy(rr)
				c.Header().Name = owner
				m.Answer = append(m.Answer, c)
			}
			if cn, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME && q.Qtype != dns.TypeANY {
				next = cn.Target
			}
		}
		if next == "" {
			break
		}
		name, owner = strings.ToLower(next), next
	}
	if len(m.Answer) == 0 {
		if soa := s.soaOf(name); soa != nil {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
	}
	return m
}

// soaOf is the SOA of the closest zone enclosing name, or nil; s.mu is
// held.
func (s *Server) soaOf(name string) dns.RR {
	for {
		for _, rr := range s.rrs[name] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr
			}
		}
		if name == "." || name == "" {
			return nil
		}
		_, rest, _ := strings.Cut(name, ".")
		if rest == "" {
			rest = "."
		}
		name = rest
	}
}

// Parse parses records in zone-file syntax (see Server.Add); one that does
// not parse fails the test.
func Parse(t testing.TB, records ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, text := range records {
		zp := dns.NewZoneParser(strings.NewReader(text+"\n"), ".", "")
		zp.SetDefaultTTL(3600)
		n := 0
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			out = append(out, rr)
			n++
		}
		if err := zp.Err(); err != nil || n == 0 {
			t.Fatalf("dnstest: records %q: %v", text, err)
		}
	}
	return out
}
