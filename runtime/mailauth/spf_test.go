package mailauth

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
)

func spfZone(t *testing.T) *testDNS {
	records := []string{
		`ip4.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`ip4.test. TXT "google-site-verification=abc"`, // not SPF: ignored
		`ip6.test. TXT "v=spf1 ip6:2001:db8::/32 -all"`,
		`upper.test. TXT "V=SPF1 IP4:192.0.2.10 -ALL"`,
		`a.test. TXT "v=spf1 a -all"`,
		`a.test. A 192.0.2.10`,
		`a.test. AAAA 2001:db8::10`,
		`acidr.test. TXT "v=spf1 a:host.acidr.test/24//64 -all"`,
		`host.acidr.test. A 192.0.2.99`,
		`host.acidr.test. AAAA 2001:db8::99`,
		`mx.test. TXT "v=spf1 mx -all"`,
		`mx.test. MX 10 mail.mx.test.`,
		`mx.test. MX 20 backup.mx.test.`,
		`mail.mx.test. A 198.51.100.7`,
		`backup.mx.test. A 192.0.2.10`,
		`include.test. TXT "v=spf1 include:ip4.test -all"`,
		`include-soft.test. TXT "v=spf1 include:fail.test ~all"`,
		`redirect.test. TXT "v=spf1 redirect=ip4.test"`,
		`redirect-all.test. TXT "v=spf1 ?all redirect=ip4.test"`,
		`fail.test. TXT "v=spf1 -all"`,
		`softfail.test. TXT "v=spf1 ~all"`,
		`neutral.test. TXT "v=spf1 ?all"`,
		`noall.test. TXT "v=spf1 ip4:198.51.100.1"`,
		`none.test. A 192.0.2.10`,
		`syntax.test. TXT "v=spf1 ip4:192.0.2.300 -all"`,
		`unknown.test. TXT "v=spf1 foo:bar.test -all"`,
		`badmacro.test. TXT "v=spf1 exists:%{x}.test -all"`,
		`late-syntax.test. TXT "v=spf1 +all ip4:nonsense"`,
		`two.test. TXT "v=spf1 -all"`,
		`two.test. TXT "v=spf1 +all"`,
		`loop.test. TXT "v=spf1 include:loop.test -all"`,
		`redirloop.test. TXT "v=spf1 redirect=redirloop.test"`,
		`void2.test. TXT "v=spf1 a:nx1.void.test mx:nx2.void.test ip4:192.0.2.0/24 -all"`,
		`void3.test. TXT "v=spf1 a:nx1.void.test a:nx2.void.test exists:nx3.void.test ip4:192.0.2.0/24 -all"`,
		`incservfail.test. TXT "v=spf1 include:servfail.test -all"`,
		`aservfail.test. TXT "v=spf1 a:sf.aservfail.test -all"`,
		`includenone.test. TXT "v=spf1 include:none.test -all"`,
		`redirectnone.test. TXT "v=spf1 redirect=none.test"`,
		`macro.test. TXT "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"`,
		`10.2.0.192.in-addr._spf.macro.test. A 127.0.0.2`,
		`0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.macro.test. A 127.0.0.2`,
		`macrol.test. TXT "v=spf1 exists:%{l}.users.%{o} -all"`,
		`alice.users.macrol.test. A 127.0.0.2`,
		`macroh.test. TXT "v=spf1 exists:%{h}.helo.%{d2} -all"`,
		`mta.example.org.helo.macroh.test. A 127.0.0.2`,
		`ptr.test. TXT "v=spf1 ptr -all"`,
		`10.2.0.192.in-addr.arpa. PTR mail.ptr.test.`,
		`mail.ptr.test. A 192.0.2.10`,
		`manymx.test. TXT "v=spf1 mx -all"`,
		`trunc.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`cname.test. CNAME ip4.test.`,
		`nullmx.test. TXT "v=spf1 mx ~all"`,
		`nullmx.test. MX 0 .`,
	}
	for i := range 11 {
		records = append(records, fmt.Sprintf(`m%d.manymx.test. A 198.51.100.%d`, i, i))
		records = append(records, fmt.Sprintf(`manymx.test. MX %d m%d.manymx.test.`, i, i))
	}
	// deep10 needs exactly 10 lookups (ten includes); deep11 needs 11.
	for _, n := range []int{10, 11} {
		records = append(records, fmt.Sprintf(`deep%d.test. TXT "v=spf1 include:1.deep%d.test -all"`, n, n))
		for i := 1; i < n; i++ {
			records = append(records, fmt.Sprintf(`%d.deep%d.test. TXT "v=spf1 include:%d.deep%d.test -all"`, i, n, i+1, n))
		}
		records = append(records, fmt.Sprintf(`%d.deep%d.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`, n, n))
	}
	z := startDNS(t, records...)
	z.servfail("servfail.test", "sf.aservfail.test")
	z.set(z.drop, "timeout.test")
	z.set(z.truncate, "trunc.test")
	return z
}

func TestSPF(t *testing.T) {
	z := spfZone(t)
	// timeout.test costs two attempts of this timeout.
	r := NewResolver([]string{z.Addr}, time.Second)
	v4 := netip.MustParseAddr("192.0.2.10")
	v6 := netip.MustParseAddr("2001:db8::10")
	other := netip.MustParseAddr("203.0.113.5")

	cases := []struct {
		name     string
		ip       netip.Addr
		mailFrom string
		helo     string
		want     authres.ResultValue
		reason   string // substring of the reason, if set
	}{
		{"ip4 pass", v4, "user@ip4.test", "", resPass, "ip4:192.0.2.0/24"},
		{"ip4 mapped client", netip.MustParseAddr("::ffff:192.0.2.10"), "user@ip4.test", "", resPass, ""},
		{"ip4 fail", other, "user@ip4.test", "", resFail, "-all"},
		{"ip4 does not match IPv6", v6, "user@ip4.test", "", resFail, ""},
		{"ip6 pass", v6, "user@ip6.test", "", resPass, ""},
		{"ip6 fail", v4, "user@ip6.test", "", resFail, ""},
		{"case-insensitive record", v4, "user@upper.test", "", resPass, ""},
		{"trailing dot domain", v4, "user@ip4.test.", "", resPass, ""},
		{"a pass", v4, "user@a.test", "", resPass, ""},
		{"a pass v6", v6, "user@a.test", "", resPass, ""},
		{"a fail", other, "user@a.test", "", resFail, ""},
		{"a with cidr v4", v4, "user@acidr.test", "", resPass, ""},
		{"a with cidr v6", netip.MustParseAddr("2001:db8::1234"), "user@acidr.test", "", resPass, ""},
		{"a with cidr miss", netip.MustParseAddr("192.0.3.10"), "user@acidr.test", "", resFail, ""},
		{"mx pass (second MX)", v4, "user@mx.test", "", resPass, ""},
		{"mx fail", other, "user@mx.test", "", resFail, ""},
		{"null MX", v4, "user@nullmx.test", "", resSoftFail, ""},
		{"include pass", v4, "user@include.test", "", resPass, ""},
		{"include fail", other, "user@include.test", "", resFail, ""},
		{"include of fail is no match", v4, "user@include-soft.test", "", resSoftFail, ""},
		{"redirect pass", v4, "user@redirect.test", "", resPass, ""},
		{"redirect fail", other, "user@redirect.test", "", resFail, ""},
		{"redirect ignored with all", v4, "user@redirect-all.test", "", resNeutral, ""},
		{"fail", v4, "user@fail.test", "", resFail, ""},
		{"softfail", v4, "user@softfail.test", "", resSoftFail, ""},
		{"neutral", v4, "user@neutral.test", "", resNeutral, ""},
		{"no match is neutral", v4, "user@noall.test", "", resNeutral, ""},
		{"none: no TXT", v4, "user@none.test", "", resNone, ""},
		{"none: NXDOMAIN", v4, "user@nowhere.test", "", resNone, ""},
		{"none: single label", v4, "user@localhost", "", resNone, ""},
		{"none: address literal", v4, "user@[192.0.2.1]", "", resNone, "not a domain name"},
		{"permerror: bad ip4", v4, "user@syntax.test", "", resPermError, "bad address"},
		{"permerror: unknown mechanism", v4, "user@unknown.test", "", resPermError, "unknown mechanism"},
		{"permerror: bad macro", v4, "user@badmacro.test", "", resPermError, ""},
		{"permerror: error after a match", v4, "user@late-syntax.test", "", resPermError, ""},
		{"permerror: two records", v4, "user@two.test", "", resPermError, "several"},
		{"permerror: include loop", v4, "user@loop.test", "", resPermError, "more than 10 DNS lookups"},
		{"permerror: redirect loop", v4, "user@redirloop.test", "", resPermError, "more than 10 DNS lookups"},
		{"ten lookups pass", v4, "user@deep10.test", "", resPass, ""},
		{"eleven lookups permerror", v4, "user@deep11.test", "", resPermError, "more than 10 DNS lookups"},
		{"two void lookups allowed", v4, "user@void2.test", "", resPass, ""},
		{"third void lookup permerror", v4, "user@void3.test", "", resPermError, "void"},
		{"permerror: too many MX", v4, "user@manymx.test", "", resPermError, "MX records"},
		{"permerror: include of none", v4, "user@includenone.test", "", resPermError, ""},
		{"permerror: redirect to none", v4, "user@redirectnone.test", "", resPermError, ""},
		{"temperror: SERVFAIL", v4, "user@servfail.test", "", resTempError, "SERVFAIL"},
		{"temperror: timeout", v4, "user@timeout.test", "", resTempError, ""},
		{"temperror: include SERVFAIL", v4, "user@incservfail.test", "", resTempError, ""},
		{"temperror: a SERVFAIL", v4, "user@aservfail.test", "", resTempError, ""},
		{"macro %{ir}.%{v} v4", v4, "user@macro.test", "", resPass, ""},
		{"macro %{ir}.%{v} v6", v6, "user@macro.test", "", resPass, ""},
		{"macro miss", other, "user@macro.test", "", resFail, ""},
		{"macro %{l} %{o}", v4, "alice@macrol.test", "", resPass, ""},
		{"macro %{l} miss", v4, "bob@macrol.test", "", resFail, ""},
		{"macro %{h}", v4, "x@macroh.test", "mta.example.org", resPass, ""},
		{"macro %{h} miss", v4, "x@macroh.test", "other.example.org", resFail, ""},
		{"ptr pass", v4, "user@ptr.test", "", resPass, ""},
		{"ptr fail", other, "user@ptr.test", "", resFail, ""},
		{"truncated over UDP, answered over TCP", v4, "user@trunc.test", "", resPass, ""},
		{"CNAME to the record", v4, "user@cname.test", "", resPass, ""},
		{"HELO identity pass", v4, "", "a.test", resPass, ""},
		{"HELO identity fail", other, "", "a.test", resFail, ""},
		{"HELO identity with dot", v4, "", "a.test.", resPass, ""},
		{"HELO address literal", v4, "", "[192.0.2.10]", resNone, "not a domain name"},
		{"HELO bare address", v4, "", "192.0.2.10", resNone, "not a domain name"},
		{"no client address", netip.Addr{}, "user@ip4.test", "", resNone, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := checkSPF(t.Context(), r, c.ip, c.helo, c.mailFrom)
			if got.result != c.want {
				t.Fatalf("got %s (%s), want %s", got.result, got.reason, c.want)
			}
			if !strings.Contains(got.reason, c.reason) {
				t.Fatalf("reason %q lacks %q", got.reason, c.reason)
			}
			wantIdentity := "mailfrom"
			if c.mailFrom == "" {
				wantIdentity = "helo"
			}
			if got.identity != wantIdentity {
				t.Fatalf("identity %q, want %q", got.identity, wantIdentity)
			}
		})
	}
}

// TestSPFCounts checks the query counts behind the limits: the eleventh
// lookup is never sent.
func TestSPFCounts(t *testing.T) {
	z := spfZone(t)
	r := NewResolver([]string{z.Addr}, 2*time.Second)
	r.cache = nil // loop.test includes itself: count the lookups on the wire
	before := z.Queries()
	got := checkSPF(t.Context(), r, netip.MustParseAddr("192.0.2.10"), "", "user@loop.test")
	if got.result != resPermError {
		t.Fatalf("got %s", got.result)
	}
	// The first TXT query plus ten includes.
	if n := z.Queries() - before; n != 11 {
		t.Fatalf("%d queries, want 11", n)
	}
}

func TestMacroExpansion(t *testing.T) {
	// RFC 7208 §7.4.
	c := &spfChecker{
		ip:           netip.MustParseAddr("192.0.2.3"),
		sender:       "strong-bad@email.example.com",
		local:        "strong-bad",
		senderDomain: "email.example.com",
		helo:         "mx.example.org",
	}
	c6 := *c
	c6.ip = netip.MustParseAddr("2001:db8::cb01")
	cases := []struct {
		c    *spfChecker
		spec string
		want string
	}{
		{c, "%{s}", "strong-bad@email.example.com"},
		{c, "%{o}", "email.example.com"},
		{c, "%{d}", "email.example.com"},
		{c, "%{d4}", "email.example.com"},
		{c, "%{d3}", "email.example.com"},
		{c, "%{d2}", "example.com"},
		{c, "%{d1}", "com"},
		{c, "%{dr}", "com.example.email"},
		{c, "%{d2r}", "example.email"},
		{c, "%{l}", "strong-bad"},
		{c, "%{l-}", "strong.bad"},
		{c, "%{lr}", "strong-bad"},
		{c, "%{lr-}", "bad.strong"},
		{c, "%{l1r-}", "strong"},
		{c, "%{h}", "mx.example.org"},
		{c, "%{p}", "unknown"},
		{c, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{c, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{c, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{c, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{c, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
		{c, "%{S}.x.test", "strong-bad%40email.example.com.x.test"},
		{c, "a%%b%_c%-d.test", "a%b c%20d.test"},
		{c, "%{d999}.test", "email.example.com.test"},
		{&c6, "%{ir}.%{v}._spf.%{d2}", "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"},
		{&c6, "%{i}", "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1"},
	}
	for _, tc := range cases {
		ms, err := parseDomainSpec(tc.spec)
		if err != nil {
			t.Errorf("parse %q: %v", tc.spec, err)
			continue
		}
		if got := tc.c.expand(ms, "email.example.com"); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.spec, got, tc.want)
		}
	}

	// A result over 253 characters loses labels on the left.
	long := &spfChecker{ip: c.ip, local: strings.Repeat("a", 60), senderDomain: "x.test"}
	spec, _ := parseDomainSpec("%{l}.%{l}.%{l}.%{l}.%{l}.end.test")
	got := long.expand(spec, "x.test")
	if len(got) > 253 || !strings.HasSuffix(got, ".end.test") || strings.HasPrefix(got, ".") {
		t.Fatalf("long expansion %d chars: %q", len(got), got)
	}
}

func TestParseSPF(t *testing.T) {
	valid := []string{
		"v=spf1",
		"v=spf1 -all",
		"v=spf1  ip4:192.0.2.0/24   ip6:2001:db8::/32 ~all ",
		"v=spf1 a a:example.com a/24 a//64 a:example.com/24//64 mx mx:example.com/28 -all",
		"v=spf1 ptr ptr:example.com include:_spf.example.com exists:%{i}.%{d} ?all",
		"v=spf1 redirect=_spf.example.com",
		"v=spf1 exp=explain.%{d} -all",
		"v=spf1 unknown-mod=whatever%{s} -all",
		"v=spf1 include:%{d}",
		"v=spf1 include:%{d}.",
		"v=spf1 include:example.com.",
		"v=spf1 include:xn--bcher-kva.example",
		"v=spf1 exists:%{l1r+-}.%{d}",
		"V=SPF1 IP4:192.0.2.1 -ALL",
	}
	for _, s := range valid {
		if _, err := parseSPF(s); err != nil {
			t.Errorf("parseSPF(%q): %v", s, err)
		}
	}
	invalid := []string{
		"v=spf10",
		"spf1 -all",
		"v=spf1 -all:foo",
		"v=spf1 ip4:192.0.2.0/33",
		"v=spf1 ip4:192.0.2.0/024",
		"v=spf1 ip4:2001:db8::1",
		"v=spf1 ip6:192.0.2.1",
		"v=spf1 ip6:2001:db8::/129",
		"v=spf1 ip4",
		"v=spf1 ip4:",
		"v=spf1 include",
		"v=spf1 include:",
		"v=spf1 include:localhost",
		"v=spf1 include:example.123",
		"v=spf1 a:",
		"v=spf1 a/33",
		"v=spf1 mx//129",
		"v=spf1 exists",
		"v=spf1 redirect=a.test redirect=b.test",
		"v=spf1 exp=a.test exp=b.test",
		"v=spf1 1bad=x",
		"v=spf1 -",
		"v=spf1 +foo",
		"v=spf1 exists:%{x}.test",
		"v=spf1 exists:%{c}.test",
		"v=spf1 exists:%{d0}.test",
		"v=spf1 exists:%{d.test",
		"v=spf1 exists:%.test",
		"v=spf1 exists:%{d}%",
		"v=spf1 exists:%{dx}.test",
		"v=spf1 redirect=%{d",
	}
	for _, s := range invalid {
		if _, err := parseSPF(s); err == nil {
			t.Errorf("parseSPF(%q) accepted", s)
		}
	}

	rec, err := parseSPF("v=spf1 -a:example.com/24//64 ~mx ip4:192.0.2.7/16 ?all redirect=r.test")
	if err != nil {
		t.Fatal(err)
	}
	d := rec.directives
	if len(d) != 4 || d[0].qualifier != '-' || d[0].cidr4 != 24 || d[0].cidr6 != 64 || d[0].domain.raw != "example.com" ||
		d[1].qualifier != '~' || d[1].mechanism != "mx" || d[1].cidr4 != 32 || d[1].cidr6 != 128 ||
		d[2].prefix != netip.MustParsePrefix("192.0.0.0/16") || !rec.hasAll || rec.redirect == nil {
		t.Fatalf("parsed %+v", rec)
	}
}
