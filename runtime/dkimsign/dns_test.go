package dkimsign

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/mailauth"
)

// serveZone serves TXT records, given as zone lines (TXT.String), from a
// DNS server on loopback (UDP and TCP on one port) until the test ends.
func serveZone(t *testing.T, lines []string) string {
	t.Helper()
	rrs := map[string][]dns.RR{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("zone line %q: %v", l, err)
		}
		name := strings.ToLower(rr.Header().Name)
		rrs[name] = append(rrs[name], rr)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeTXT {
			m.Answer = rrs[strings.ToLower(q.Question[0].Name)]
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
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
		var wg sync.WaitGroup
		servers := []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}}
		for _, s := range servers {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			wg.Go(func() { _ = s.ActivateAndServe() })
			<-started
		}
		t.Cleanup(func() {
			for _, s := range servers {
				_ = s.Shutdown()
			}
			wg.Wait()
		})
		return pc.LocalAddr().String()
	}
	t.Fatal("no free UDP+TCP port pair")
	return ""
}

// The records in zone-file syntax, served by a real DNS server, let the
// box's own inbound verifier (runtime/mailauth) pass both signatures.
func TestRecordsServedByDNS(t *testing.T) {
	k, _ := keysForTest(t)
	recs, err := k.Records()
	if err != nil {
		t.Fatal(err)
	}
	var zone []string
	for _, r := range recs {
		zone = append(zone, r.String())
	}
	addr := serveZone(t, zone)
	v := mailauth.NewVerifier(mailauth.NewResolver([]string{addr}, 2*time.Second), 10*time.Second, nil)
	in := mailauth.Input{AuthservID: "mx.example.net", RemoteIP: netip.MustParseAddr("127.0.0.1"), HELO: "mail.example.com", MailFrom: "alice@example.com"}
	signed := string(signString(t, messages[0].msg, k))
	for _, tc := range []struct {
		name, msg  string
		pass, fail int
	}{
		{"signed", signed, 2, 0},
		{"tampered", strings.Replace(signed, "Hello Bob.", "Hello Eve.", 1), 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar := v.Verify(context.Background(), in, strings.NewReader(tc.msg))
			if p, f := strings.Count(ar, "dkim=pass"), strings.Count(ar, "dkim=fail"); p != tc.pass || f != tc.fail {
				t.Errorf("%d dkim=pass and %d dkim=fail, want %d and %d:\n%s", p, f, tc.pass, tc.fail, ar)
			}
		})
	}
}
