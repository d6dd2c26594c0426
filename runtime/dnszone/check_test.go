package dnszone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
)

// published is the zone the test's DNS server answers from: what a
// registrar's servers would publish, with its mistakes.
const published = `$ORIGIN ma-societe.fr.
$TTL 28800
@               3600  SOA   ns1 hostmaster 2026120402 3600 900 1209600 3600
@                     NS    ns1
ns1             10800 A     192.0.2.10
@                     MX    10 mail
mail            10800 A     192.0.2.10
@                     TXT   "v=spf1 mx -all"
@                     TXT   "google-site-verification=abc"
ed._domainkey         TXT   "v=DKIM1; k=ed25519; " "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
_dmarc                TXT   "v=DMARC1; p=none"
nov._domainkey        TXT   "k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
cn._domainkey         CNAME key.provider.example.
key.provider.example. TXT   "k=rsa; p=MIIB"
www             10800 CNAME site.example.net.
site.example.net.     A     198.51.100.7
two                   A     192.0.2.1
two                   A     192.0.2.2
refused               A     192.0.2.99
`

// startTestServer serves the zone text and, under many.ma-societe.fr, 100
// addresses: more than an answer over UDP holds. Names under "refused."
// get REFUSED, and queries without RD a SERVFAIL.
func startTestServer(t *testing.T, zone string) *dnstest.Server {
	t.Helper()
	s := dnstest.New(t, zone)
	for i := range 100 {
		s.Add(fmt.Sprintf("many.ma-societe.fr. 10800 A 10.0.%d.%d", i/250, i%250+1))
	}
	s.SetRcode(dns.RcodeRefused, "refused.ma-societe.fr.")
	s.SetHandler(func(w dns.ResponseWriter, r *dns.Msg) {
		if !r.RecursionDesired {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
			return
		}
		s.Reply(w, r)
	})
	return s
}

func TestCheck(t *testing.T) {
	ts := startTestServer(t, published)
	addr := ts.Addr()
	for _, c := range []struct {
		name     string
		expected []string
		kind     string
		verdict  Verdict
		note     string // a part of the finding's note
	}{
		{"MX", []string{"ma-societe.fr. 28800 MX 10 mail.ma-societe.fr."}, "MX", Match, ""},
		{"MX other host", []string{"ma-societe.fr. 28800 MX 10 mx.example.net."}, "MX", Differs, ""},
		{"MX other preference", []string{"ma-societe.fr. 28800 MX 20 mail.ma-societe.fr."}, "MX", Differs, ""},
		{"MX TTL", []string{"ma-societe.fr. 3600 MX 10 MAIL.ma-societe.fr."}, "MX", Match, "TTL 28800, expected 3600"},
		{"A", []string{"mail.ma-societe.fr. 10800 A 192.0.2.10"}, "A", Match, ""},
		{"A owner in capitals", []string{"Mail.MA-SOCIETE.fr. 10800 A 192.0.2.10"}, "A", Match, ""},
		{"A other address", []string{"mail.ma-societe.fr. 10800 A 192.0.2.11"}, "A", Differs, ""},
		{"A one of two", []string{"two.ma-societe.fr. 10800 A 192.0.2.1"}, "A", Differs, ""},
		{"A set", []string{"two.ma-societe.fr. 28800 A 192.0.2.2", "two.ma-societe.fr. 28800 A 192.0.2.1"}, "A", Match, ""},
		{"A set, one more expected", []string{"two.ma-societe.fr. 28800 A 192.0.2.2", "two.ma-societe.fr. 28800 A 192.0.2.1", "two.ma-societe.fr. 28800 A 192.0.2.3"}, "A", Differs, ""},
		{"AAAA NODATA", []string{"mail.ma-societe.fr. 10800 AAAA 2001:db8::10"}, "AAAA", Missing, "NODATA"},
		{"SPF beside another TXT", []string{`ma-societe.fr. 28800 TXT "v=spf1 mx -all"`}, "SPF", Match, ""},
		{"SPF other", []string{`ma-societe.fr. 28800 TXT "v=spf1 mx include:relay.example.net -all"`}, "SPF", Differs, ""},
		{"DKIM in one string, published in two", []string{`ed._domainkey.ma-societe.fr. 28800 TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`}, "DKIM", Match, ""},
		{"DKIM other key", []string{`ed._domainkey.ma-societe.fr. 28800 TXT "v=DKIM1; k=ed25519; p=AAAAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`}, "DKIM", Differs, ""},
		{"DKIM of another selector", []string{`rsa._domainkey.ma-societe.fr. 28800 TXT "v=DKIM1; k=rsa; p=MIIB"`}, "DKIM", Missing, "NXDOMAIN"},
		{"DKIM without its v= tag", []string{`nov._domainkey.ma-societe.fr. 28800 TXT "k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`}, "DKIM", Match, ""},
		{"DKIM behind a CNAME", []string{`cn._domainkey.ma-societe.fr. 28800 TXT "k=rsa; p=MIIB"`}, "DKIM", Differs, "alias (CNAME) of key.provider.example."},
		{"DMARC other policy", []string{`_dmarc.ma-societe.fr. 28800 TXT "v=DMARC1; p=quarantine"`}, "DMARC", Differs, ""},
		{"MTA-STS NXDOMAIN", []string{`_mta-sts.ma-societe.fr. 28800 TXT "v=STSv1; id=2026120401"`}, "MTA-STS", Missing, "NXDOMAIN"},
		{"TLS-RPT where only SPF is", []string{`ma-societe.fr. 28800 TXT "v=TLSRPTv1; rua=mailto:tls@ma-societe.fr"`}, "TLS-RPT", Missing, ""},
		{"A behind a CNAME", []string{"www.ma-societe.fr. 10800 A 198.51.100.7"}, "A", Differs, "alias (CNAME) of site.example.net."},
		{"CNAME", []string{"www.ma-societe.fr. 10800 CNAME site.example.net."}, "CNAME", Match, ""},
		{"CNAME other target", []string{"www.ma-societe.fr. 10800 CNAME other.example.net."}, "CNAME", Differs, ""},
		{"NS", []string{"ma-societe.fr. 28800 NS ns1.ma-societe.fr."}, "NS", Match, ""},
		{"NS other", []string{"ma-societe.fr. 28800 NS ns1.ma-societe.fr.", "ma-societe.fr. 28800 NS ns2.ma-societe.fr."}, "NS", Differs, ""},
		{"SOA older serial", []string{"ma-societe.fr. 3600 SOA ns1.ma-societe.fr. hostmaster.ma-societe.fr. 2026120401 3600 900 1209600 3600"}, "SOA", Match, "serial 2026120402, expected 2026120401"},
		{"SOA other server", []string{"ma-societe.fr. 3600 SOA ns.example.net. hostmaster.ma-societe.fr. 2026120402 3600 900 1209600 3600"}, "SOA", Differs, ""},
		{"REFUSED", []string{"refused.ma-societe.fr. 10800 A 192.0.2.99"}, "A", Error, "REFUSED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			got := Check(ctx, addr, dnstest.Parse(t, c.expected...))
			if len(got) != 1 {
				t.Fatalf("%d findings, want 1: %v", len(got), got)
			}
			f := got[0]
			if f.Kind != c.kind || f.Verdict != c.verdict || !strings.Contains(f.Note, c.note) {
				t.Errorf("finding %v; want %s %s with a note containing %q", f, c.kind, c.verdict, c.note)
			}
			if len(f.Expected) != len(c.expected) {
				t.Errorf("finding with %d expected records, want %d", len(f.Expected), len(c.expected))
			}
			if f.Verdict == Error && f.Err == nil {
				t.Error("an error verdict without its Err")
			}
		})
	}

	t.Run("truncated over UDP, asked again over TCP", func(t *testing.T) {
		var want []string
		for i := range 100 {
			want = append(want, fmt.Sprintf("many.ma-societe.fr. 10800 A 10.0.%d.%d", i/250, i%250+1))
		}
		before := ts.TCPQueries()
		got := Check(t.Context(), addr, dnstest.Parse(t, want...))
		if len(got) != 1 || got[0].Verdict != Match || len(got[0].Published) != 100 {
			t.Fatalf("findings %v, want one match of 100 records", got)
		}
		if ts.TCPQueries() == before {
			t.Error("no query over TCP")
		}
	})

	t.Run("every record set at once, in the order expected", func(t *testing.T) {
		c := &Checker{Resolver: addr, Parallel: 3, Timeout: 5 * time.Second}
		got := c.Check(t.Context(), dnstest.Parse(t,
			"ma-societe.fr. 28800 MX 10 mail.ma-societe.fr.",
			`ma-societe.fr. 28800 TXT "v=spf1 mx -all"`,
			"mail.ma-societe.fr. 10800 A 192.0.2.10",
			`ma-societe.fr. 28800 TXT "v=TLSRPTv1; rua=mailto:tls@ma-societe.fr"`,
			`_dmarc.ma-societe.fr. 28800 TXT "v=DMARC1; p=none"`,
			"mail.ma-societe.fr. 10800 AAAA 2001:db8::10",
			"two.ma-societe.fr. 28800 A 192.0.2.2",
			"two.ma-societe.fr. 28800 A 192.0.2.1",
		))
		var lines []string
		for _, f := range got {
			lines = append(lines, fmt.Sprintf("%s %s %s", f.Kind, f.Name, f.Verdict))
		}
		want := []string{
			"MX ma-societe.fr. match",
			"SPF ma-societe.fr. match",
			"A mail.ma-societe.fr. match",
			"TLS-RPT ma-societe.fr. missing",
			"DMARC _dmarc.ma-societe.fr. match",
			"AAAA mail.ma-societe.fr. missing",
			"A two.ma-societe.fr. match",
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
	})

}

// TestCheckSilentResolver: a resolver that never answers gives an error
// verdict for every record set once the timeouts have passed, not a hang.
func TestCheckSilentResolver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var asked atomic.Int32
	go func() { // reads and drops every query, until pc is closed
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			asked.Add(1)
		}
	}()
	c := &Checker{Resolver: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond}
	done := make(chan []Finding)
	go func() {
		done <- c.Check(t.Context(), dnstest.Parse(t,
			"ma-societe.fr. 28800 MX 10 mail.ma-societe.fr.",
			"mail.ma-societe.fr. 10800 A 192.0.2.10",
			`_dmarc.ma-societe.fr. 28800 TXT "v=DMARC1; p=none"`,
		))
	}()
	select {
	case got := <-done:
		if len(got) != 3 {
			t.Fatalf("%d findings, want 3: %v", len(got), got)
		}
		for _, f := range got {
			var ne net.Error
			if f.Verdict != Error || !errors.As(f.Err, &ne) || !ne.Timeout() {
				t.Errorf("finding %v (err %v), want an error verdict from a timeout", f, f.Err)
			}
		}
		if n := asked.Load(); n < 6 {
			t.Errorf("the resolver was asked %d times, want each query twice (6)", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Check did not return 20 s after its 200 ms timeouts")
	}

	// The caller's context ends the wait too.
	ctx, cancel := context.WithCancel(t.Context())
	c.Timeout = time.Hour
	go func() {
		done <- c.Check(ctx, dnstest.Parse(t, "mail.ma-societe.fr. 10800 A 192.0.2.10"))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case got := <-done:
		if len(got) != 1 || got[0].Verdict != Error || !errors.Is(got[0].Err, context.Canceled) {
			t.Fatalf("cancelled: %v (err %v), want an error verdict of the cancellation", got, got[0].Err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Check did not return after its context was cancelled")
	}
}

// FuzzTXTKind: any published TXT text is given a kind without a panic, and
// the comparison of two TXT records is symmetric and ignores how the text
// is split into strings.
func FuzzTXTKind(f *testing.F) {
	for _, s := range []string{"v=spf1 mx -all", "v=DKIM1; k=ed25519; p=AAAA", "v=DMARC1;p=none", "", " ", ";", "v=STSv1", "\tv=spf1", "é;"} {
		f.Add(s, "v=spf1 mx -all", 3)
	}
	f.Fuzz(func(t *testing.T, a, b string, split int) {
		mk := func(name, s string, n int) *dns.TXT {
			rr := &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}}
			if n > 0 && n < len(s) {
				rr.Txt = []string{s[:n], s[n:]}
			} else {
				rr.Txt = []string{s}
			}
			return rr
		}
		ra, rb := mk("x._domainkey.example.", a, split), mk("example.", b, 0)
		if kindOf(ra, "x._domainkey.example.") == "" || kindOf(rb, "example.") == "" {
			t.Fatalf("no kind for %q or %q", a, b)
		}
		if kindOf(ra, "x._domainkey.example.") != kindOf(mk("x._domainkey.example.", a, 0), "x._domainkey.example.") {
			t.Errorf("the kind of %q depends on its split", a)
		}
		if sameData(ra, rb) != sameData(rb, ra) {
			t.Errorf("sameData(%q, %q) is not symmetric", a, b)
		}
		if !sameData(ra, mk("X._DOMAINKEY.example.", a, 0)) {
			t.Errorf("%q split at %d differs from itself in one string", a, split)
		}
	})
}
