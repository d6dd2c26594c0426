package dnsd

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

const negSOA = "ma-societe.fr. 300 IN SOA ns1.ma-societe.fr. hostmaster.ma-societe.fr. 2026120401 7200 3600 1209600 300"

// TestAnswers: the authoritative answers, from outside the LAN over UDP
// and TCP.
func TestAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, testSet(t, serial, false))
	cases := []struct {
		name, qname string
		qtype       uint16
		rcode       int
		aa          bool
		answer, ns  []string
		extra       []string
	}{
		{"A", "mail.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"mail.ma-societe.fr. 10800 IN A 192.0.2.1"}, nil, nil},
		{"case of the question", "MAIL.Ma-Societe.FR.", dns.TypeAAAA, dns.RcodeSuccess, true,
			[]string{"mail.ma-societe.fr. 10800 IN AAAA 2001:db8::1"}, nil, nil},
		{"MX with the exchanger's addresses", "ma-societe.fr.", dns.TypeMX, dns.RcodeSuccess, true,
			[]string{"ma-societe.fr. 28800 IN MX 10 mail.ma-societe.fr."}, nil,
			[]string{"mail.ma-societe.fr. 10800 IN A 192.0.2.1", "mail.ma-societe.fr. 10800 IN AAAA 2001:db8::1"}},
		{"NS with glue", "ma-societe.fr.", dns.TypeNS, dns.RcodeSuccess, true,
			[]string{"ma-societe.fr. 3600 IN NS ns1.ma-societe.fr."}, nil,
			[]string{"ns1.ma-societe.fr. 10800 IN A 192.0.2.1"}},
		{"NXDOMAIN with the SOA, negative TTL", "nope.ma-societe.fr.", dns.TypeA, dns.RcodeNameError, true,
			nil, []string{negSOA}, nil},
		{"NODATA with the SOA", "web.ma-societe.fr.", dns.TypeAAAA, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"CNAME chased in the zone", "www.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"www.ma-societe.fr. 10800 IN CNAME web.ma-societe.fr.", "web.ma-societe.fr. 10800 IN A 192.0.2.80"}, nil, nil},
		{"CNAME asked", "www.ma-societe.fr.", dns.TypeCNAME, dns.RcodeSuccess, true,
			[]string{"www.ma-societe.fr. 10800 IN CNAME web.ma-societe.fr."}, nil, nil},
		{"CNAME out of the zone", "ext.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"ext.ma-societe.fr. 10800 IN CNAME www.example.net."}, nil, nil},
		{"CNAME to a name that does not exist", "dangling.ma-societe.fr.", dns.TypeA, dns.RcodeNameError, true,
			[]string{"dangling.ma-societe.fr. 10800 IN CNAME nowhere.ma-societe.fr."}, []string{negSOA}, nil},
		{"CNAME loop ends", "loop1.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{
				"loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.", "loop2.ma-societe.fr. 10800 IN CNAME loop1.ma-societe.fr.",
				"loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.", "loop2.ma-societe.fr. 10800 IN CNAME loop1.ma-societe.fr.",
				"loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.", "loop2.ma-societe.fr. 10800 IN CNAME loop1.ma-societe.fr.",
				"loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.", "loop2.ma-societe.fr. 10800 IN CNAME loop1.ma-societe.fr.",
				"loop1.ma-societe.fr. 10800 IN CNAME loop2.ma-societe.fr.",
			}, nil, nil},
		{"wildcard", "x.wild.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"x.wild.ma-societe.fr. 10800 IN A 192.0.2.99"}, nil, nil},
		{"wildcard, deeper", "y.x.wild.ma-societe.fr.", dns.TypeTXT, dns.RcodeSuccess, true,
			[]string{`y.x.wild.ma-societe.fr. 10800 IN TXT "wild"`}, nil, nil},
		{"wildcard NODATA", "x.wild.ma-societe.fr.", dns.TypeMX, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"no wildcard for a name that exists", "host.wild.ma-societe.fr.", dns.TypeTXT, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"no wildcard below a name that exists", "x.host.wild.ma-societe.fr.", dns.TypeA, dns.RcodeNameError, true,
			nil, []string{negSOA}, nil},
		{"the wildcard itself", "*.wild.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"*.wild.ma-societe.fr. 10800 IN A 192.0.2.99"}, nil, nil},
		{"empty non-terminal is NODATA", "ent.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"empty non-terminal of a wildcard", "wild.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"below an empty non-terminal", "b.ent.ma-societe.fr.", dns.TypeA, dns.RcodeNameError, true,
			nil, []string{negSOA}, nil},
		{"referral below a cut, with glue", "www.sub.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, false,
			nil, []string{"sub.ma-societe.fr. 3600 IN NS ns.sub.ma-societe.fr."},
			[]string{"ns.sub.ma-societe.fr. 3600 IN A 192.0.2.53"}},
		{"ANY: one RRset", "mail.ma-societe.fr.", dns.TypeANY, dns.RcodeSuccess, true,
			[]string{"mail.ma-societe.fr. 10800 IN A 192.0.2.1"}, nil, nil},
		{"ANY of an empty non-terminal", "ent.ma-societe.fr.", dns.TypeANY, dns.RcodeSuccess, true,
			nil, []string{negSOA}, nil},
		{"outside the zones: REFUSED", "www.example.com.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{"the root: REFUSED", ".", dns.TypeNS, dns.RcodeRefused, false, nil, nil, nil},
		{"a LAN name from outside: the zone's", "mail.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true,
			[]string{"mail.ma-societe.fr. 10800 IN A 192.0.2.1"}, nil, nil},
		{"mailfountain.local from outside", "mailfountain.local.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{"AXFR over UDP: REFUSED", "ma-societe.fr.", dns.TypeAXFR, dns.RcodeRefused, false, nil, nil, nil},
	}
	for _, transport := range []string{"udp", "tcp"} {
		for _, c := range cases {
			if c.qtype == dns.TypeAXFR && transport == "tcp" {
				continue // TestTransfer
			}
			t.Run(transport+"/"+c.name, func(t *testing.T) {
				r := e.query(transport, wanClient, c.qname, c.qtype)
				if r.Rcode != c.rcode || r.Authoritative != c.aa {
					t.Fatalf("rcode %s AA %v, want %s AA %v\n%v", dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[c.rcode], c.aa, r)
				}
				if r.RecursionAvailable || !r.RecursionDesired {
					t.Errorf("RA %v RD %v, want RA off outside the LAN and RD copied", r.RecursionAvailable, r.RecursionDesired)
				}
				if r.Question[0].Name != c.qname {
					t.Errorf("question %q, want %q as asked", r.Question[0].Name, c.qname)
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, c.answer) {
					t.Errorf("answer:\n%q\nwant\n%q", got, c.answer)
				}
				if got := rrStrings(r.Ns); !slices.Equal(got, c.ns) {
					t.Errorf("authority:\n%q\nwant\n%q", got, c.ns)
				}
				if got := rrStrings(r.Extra); !slices.Equal(got, c.extra) {
					t.Errorf("additional:\n%q\nwant\n%q", got, c.extra)
				}
			})
		}
	}
	if n := e.met.Counts()["dns query udp nxdomain"]; n != 4 {
		t.Errorf("metrics: %d NXDOMAIN over UDP, want 4 (%v)", n, e.met.Counts())
	}
}

// TestEDNS: the OPT of answers, and FORMERR or BADVERS for a bad one.
func TestEDNS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, testSet(t, serial, false))
	opt := func(size uint16, version uint8, do bool) *dns.OPT {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(size)
		o.SetVersion(version)
		if do {
			o.SetDo()
		}
		return o
	}
	cases := []struct {
		name    string
		extra   []dns.RR
		ns      []dns.RR
		rcode   int
		wantOPT bool
		do      bool
	}{
		{"no OPT, none back", nil, nil, dns.RcodeSuccess, false, false},
		{"OPT 4096", []dns.RR{opt(4096, 0, false)}, nil, dns.RcodeSuccess, true, false},
		{"OPT 100: 512", []dns.RR{opt(100, 0, false)}, nil, dns.RcodeSuccess, true, false},
		{"DO copied", []dns.RR{opt(1232, 0, true)}, nil, dns.RcodeSuccess, true, true},
		{"version 1: BADVERS", []dns.RR{opt(1232, 1, false)}, nil, dns.RcodeBadVers, true, false},
		{"two OPT: FORMERR", []dns.RR{opt(1232, 0, false), opt(1232, 0, false)}, nil, dns.RcodeFormatError, false, false},
		{"OPT in authority: FORMERR", nil, []dns.RR{opt(1232, 0, false)}, dns.RcodeFormatError, false, false},
		{"OPT not of the root: FORMERR", []dns.RR{&dns.OPT{Hdr: dns.RR_Header{Name: "ma-societe.fr.", Rrtype: dns.TypeOPT, Class: 1232}}}, nil, dns.RcodeFormatError, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("mail.ma-societe.fr.", dns.TypeA)
			m.Extra = c.extra
			m.Ns = c.ns
			r := e.exchange("udp", wanClient, m)
			if r.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
			}
			o := r.IsEdns0()
			if (o != nil) != c.wantOPT {
				t.Fatalf("OPT in the answer: %v, want %v", o, c.wantOPT)
			}
			if o == nil {
				return
			}
			if o.UDPSize() != DefaultUDPSize || o.Version() != 0 || o.Do() != c.do {
				t.Errorf("OPT: size %d version %d DO %v, want %d 0 %v", o.UDPSize(), o.Version(), o.Do(), DefaultUDPSize, c.do)
			}
		})
	}
}

// TestTruncation: an answer too large for UDP is truncated (TC) and
// whole over TCP; the UDP size is the client's, at most 1232.
func TestTruncation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, testSet(t, serial, false))
	cases := []struct {
		name      string
		transport string
		size      uint16 // EDNS0 size, 0 for none
		tc        bool
		maxLen    int
	}{
		{"UDP without EDNS0", "udp", 0, true, 512},
		{"UDP 1232", "udp", 1232, true, 1232},
		{"UDP 4096 is 1232", "udp", 4096, true, 1232},
		{"TCP", "tcp", 0, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("big.ma-societe.fr.", dns.TypeTXT)
			if c.size > 0 {
				m.SetEdns0(c.size, false)
			}
			cl := client(c.transport, wanClient)
			cl.UDPSize = 65535 // the test reads whatever comes
			r, _, err := cl.Exchange(m, e.addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Truncated != c.tc {
				t.Fatalf("TC %v, want %v", r.Truncated, c.tc)
			}
			if c.tc {
				r.Compress = true // the length as sent
				if l := r.Len(); l > c.maxLen {
					t.Errorf("%d bytes over UDP, want at most %d", l, c.maxLen)
				}
				if len(r.Answer) >= bigTXT {
					t.Errorf("%d records truncated: all of them", len(r.Answer))
				}
			} else if len(r.Answer) != bigTXT {
				t.Errorf("%d records over TCP, want %d", len(r.Answer), bigTXT)
			}
		})
	}
}

// TestLANView: what LAN clients get, and that only they reach the
// recursor.
func TestLANView(t *testing.T) {
	t.Parallel()
	rec := &staticRecursor{}
	e := newEnv(t, Config{Recursor: rec}, testSet(t, serial, false))
	failing := newEnv(t, Config{Recursor: &staticRecursor{err: errors.New("upstream down")}}, testSet(t, serial, false))
	none := newEnv(t, Config{}, testSet(t, serial, false))
	setup := newEnv(t, Config{Recursor: rec}, testSet(t, serial, true))
	cases := []struct {
		name   string
		e      *env
		src    netip.Addr
		qname  string
		qtype  uint16
		rcode  int
		aa, ra bool
		answer []string
	}{
		{"LAN name: the LAN address", e, lanClient, "mailfountain.local.", dns.TypeA, dns.RcodeSuccess, true, true,
			[]string{"mailfountain.local. 60 IN A 127.0.1.1"}},
		{"split horizon", e, lanClient, "mail.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true, true,
			[]string{"mail.ma-societe.fr. 60 IN A 127.0.1.1"}},
		{"split horizon: no public AAAA", e, lanClient, "mail.ma-societe.fr.", dns.TypeAAAA, dns.RcodeSuccess, true, true, nil},
		{"LAN name, other type: the zone", e, lanClient, "ma-societe.fr.", dns.TypeMX, dns.RcodeSuccess, true, true,
			[]string{"ma-societe.fr. 28800 IN MX 10 mail.ma-societe.fr."}},
		{"the zone for the LAN too", e, lanClient, "web.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true, true,
			[]string{"web.ma-societe.fr. 10800 IN A 192.0.2.80"}},
		{"NXDOMAIN of the zone, not recursed", e, lanClient, "nope.ma-societe.fr.", dns.TypeA, dns.RcodeNameError, true, true, nil},
		{"outside: the recursor", e, lanClient, "www.example.com.", dns.TypeA, dns.RcodeSuccess, false, true,
			[]string{"www.example.com. 60 IN A 198.51.100.7"}},
		{"outside from the WAN: REFUSED", e, wanClient, "www.example.com.", dns.TypeA, dns.RcodeRefused, false, false, nil},
		{"recursor failing: SERVFAIL", failing, lanClient, "www.example.com.", dns.TypeA, dns.RcodeServerFailure, false, true, nil},
		{"no recursor: SERVFAIL", none, lanClient, "www.example.com.", dns.TypeA, dns.RcodeServerFailure, false, false, nil},
		{"setup: any name is the box", setup, lanClient, "www.example.com.", dns.TypeA, dns.RcodeSuccess, true, true,
			[]string{"www.example.com. 0 IN A 127.0.1.1"}},
		{"setup: a zone's name is the box", setup, lanClient, "web.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true, true,
			[]string{"web.ma-societe.fr. 0 IN A 127.0.1.1"}},
		{"setup: AAAA NODATA", setup, lanClient, "www.example.com.", dns.TypeAAAA, dns.RcodeSuccess, true, true, nil},
		{"setup: MX NODATA", setup, lanClient, "www.example.com.", dns.TypeMX, dns.RcodeSuccess, true, true, nil},
		{"setup: not for the WAN", setup, wanClient, "web.ma-societe.fr.", dns.TypeA, dns.RcodeSuccess, true, false,
			[]string{"web.ma-societe.fr. 10800 IN A 192.0.2.80"}},
		{"setup: the WAN is still refused", setup, wanClient, "www.example.com.", dns.TypeA, dns.RcodeRefused, false, false, nil},
	}
	for _, transport := range []string{"udp", "tcp"} {
		for _, c := range cases {
			t.Run(transport+"/"+c.name, func(t *testing.T) {
				r := c.e.query(transport, c.src, c.qname, c.qtype)
				if r.Rcode != c.rcode || r.Authoritative != c.aa || r.RecursionAvailable != c.ra {
					t.Fatalf("rcode %s AA %v RA %v, want %s AA %v RA %v\n%v", dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable,
						dns.RcodeToString[c.rcode], c.aa, c.ra, r)
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, c.answer) {
					t.Errorf("answer:\n%q\nwant\n%q", got, c.answer)
				}
			})
		}
	}
	// www.example.com from the LAN, over UDP and TCP: twice; the WAN's
	// and setup mode's never.
	if n := rec.count(); n != 2 {
		t.Errorf("recursor called %d times, want 2: %v", n, rec.calls)
	}
}

// TestNoRecursionWithoutRD: a LAN query without RD for a name outside is
// refused rather than recursed.
func TestNoRecursionWithoutRD(t *testing.T) {
	t.Parallel()
	rec := &staticRecursor{}
	e := newEnv(t, Config{Recursor: rec}, testSet(t, serial, false))
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.RecursionDesired = false
	r := e.exchange("udp", lanClient, m)
	if r.Rcode != dns.RcodeRefused || rec.count() != 0 {
		t.Errorf("rcode %s, recursor called %d times; want REFUSED, 0", dns.RcodeToString[r.Rcode], rec.count())
	}
}
