package dnstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func exchange(t *testing.T, s *Server, net, name string, typ uint16, edns bool) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, typ)
	if edns {
		q.SetEdns0(4096, true)
	}
	c := &dns.Client{Net: net, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[typ], net, err)
	}
	return r
}

func TestServer(t *testing.T) {
	s := New(t, `$ORIGIN example.
$TTL 300
@ SOA ns hostmaster 1 3600 600 86400 60
www A 192.0.2.1
alias CNAME www
a.b.c TXT "deep"`, "Mail.Example. MX 10 www.example.")
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("many.example. A 10.0.0.%d", i+1)
	}
	s.Add(many...)
	for _, c := range []struct {
		net, name string
		typ       uint16
		edns      bool
		rcode     int
		answers   int
		soa, tc   bool
	}{
		{"udp", "www.example.", dns.TypeA, false, dns.RcodeSuccess, 1, false, false},
		{"tcp", "WWW.example.", dns.TypeA, false, dns.RcodeSuccess, 1, false, false},
		{"udp", "www.example.", dns.TypeAAAA, false, dns.RcodeSuccess, 0, true, false},
		{"udp", "nope.example.", dns.TypeA, false, dns.RcodeNameError, 0, true, false},
		{"udp", "b.c.example.", dns.TypeTXT, false, dns.RcodeSuccess, 0, true, false},
		{"udp", "alias.example.", dns.TypeA, false, dns.RcodeSuccess, 2, false, false},
		{"udp", "alias.example.", dns.TypeCNAME, false, dns.RcodeSuccess, 1, false, false},
		{"udp", "mail.example.", dns.TypeMX, false, dns.RcodeSuccess, 1, false, false},
		{"udp", "www.example.", dns.TypeANY, false, dns.RcodeSuccess, 1, false, false},
		{"udp", "other.test.", dns.TypeA, false, dns.RcodeNameError, 0, false, false},
		{"udp", "many.example.", dns.TypeA, false, dns.RcodeSuccess, 31, false, true},
		{"udp", "many.example.", dns.TypeA, true, dns.RcodeSuccess, 100, false, false},
		{"tcp", "many.example.", dns.TypeA, false, dns.RcodeSuccess, 100, false, false},
	} {
		t.Run(c.net+" "+c.name+" "+dns.TypeToString[c.typ], func(t *testing.T) {
			r := exchange(t, s, c.net, c.name, c.typ, c.edns)
			if r.Rcode != c.rcode || r.Truncated != c.tc || (len(r.Ns) == 1) != c.soa {
				t.Errorf("rcode %s TC %v authority %v, want %s TC %v SOA %v", dns.RcodeToString[r.Rcode], r.Truncated, r.Ns, dns.RcodeToString[c.rcode], c.tc, c.soa)
			}
			// Truncated answers hold what fits: at least some.
			if len(r.Answer) != c.answers && !(c.tc && len(r.Answer) > 0 && len(r.Answer) < 100) {
				t.Errorf("%d answers, want %d: %v", len(r.Answer), c.answers, r.Answer)
			}
			if len(r.Answer) > 0 && r.Answer[0].Header().Name != c.name {
				t.Errorf("answer owner %q, want the question's %q", r.Answer[0].Header().Name, c.name)
			}
			if (r.IsEdns0() != nil) != c.edns {
				t.Errorf("OPT %v, want one %v", r.IsEdns0(), c.edns)
			}
		})
	}
}

func TestServerChanges(t *testing.T) {
	s := New(t, "a.test. A 192.0.2.1", "a.test. TXT x")
	s.Set("A.test", dns.TypeA, "a.test. A 192.0.2.2", "a.test. A 192.0.2.3")
	if r := exchange(t, s, "udp", "a.test.", dns.TypeA, false); len(r.Answer) != 2 {
		t.Errorf("after Set: %v", r.Answer)
	}
	s.Set("a.test.", dns.TypeA)
	if r := exchange(t, s, "udp", "a.test.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after removing the A records: %v", r)
	}
	if n := len(s.Records()); n != 1 {
		t.Errorf("%d records, want the TXT", n)
	}
	s.SetRcode(dns.RcodeServerFailure, "a.test")
	if r := exchange(t, s, "udp", "a.test.", dns.TypeTXT, false); r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("after SetRcode: %v", r)
	}
	s.SetRcode(dns.RcodeSuccess, "a.test")
	s.SetHandler(func(w dns.ResponseWriter, r *dns.Msg) {
		m := s.Answer(r)
		m.Authoritative = true
		_ = w.WriteMsg(m)
	})
	if r := exchange(t, s, "tcp", "a.test.", dns.TypeTXT, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
		t.Errorf("through the handler: %v", r)
	}
	if s.Queries() != 4 || s.TCPQueries() != 1 || s.QueriesFor("A.TEST", dns.TypeA) != 2 || s.QueriesFor("a.test", dns.TypeTXT) != 2 {
		t.Errorf("%d queries, %d over TCP, %d for a.test A, %d for TXT; want 4, 1, 2, 2",
			s.Queries(), s.TCPQueries(), s.QueriesFor("a.test", dns.TypeA), s.QueriesFor("a.test", dns.TypeTXT))
	}
}
