package smtpout

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
	"mailfountain.dev/mailfountain/runtime/mtasts"
	"mailfountain.dev/mailfountain/runtime/tlscert/certtest"
)

// TestRelay: the smarthost with AUTH over STARTTLS and over implicit TLS
// (465), with a verified certificate; a certificate that does not verify,
// a refused login, ViaRelay without a smarthost, and direct mode with a
// smarthost for block answers only.
func TestRelay(t *testing.T) {
	ca := certtest.New(t)
	good := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "relay.test")}}
	other := certtest.New(t) // a certificate from an authority the client does not trust
	bad := &tls.Config{Certificates: []tls.Certificate{other.Issue(t, "relay.test")}}
	users := map[string]string{"box": "s3cret"}

	type relayCase struct {
		name     string
		sink     *sink
		implicit bool
		user     string
		pass     string
		ok       bool
		text     string // in the failure
	}
	cases := []relayCase{
		{name: "STARTTLS and AUTH PLAIN", sink: &sink{TLS: good, Auth: users, Pipelining: true}, user: "box", pass: "s3cret", ok: true},
		{name: "STARTTLS and AUTH LOGIN only", sink: &sink{TLS: good, Auth: users, AuthMechs: "LOGIN"}, user: "box", pass: "s3cret", ok: true},
		{name: "465 and AUTH", sink: &sink{TLS: good, Implicit: true, Auth: users}, implicit: true, user: "box", pass: "s3cret", ok: true},
		{name: "no AUTH when no username", sink: &sink{TLS: good}, ok: true},
		{name: "certificate not verified (STARTTLS)", sink: &sink{TLS: bad, Auth: users}, user: "box", pass: "s3cret", text: "verified certificate"},
		{name: "certificate not verified (465)", sink: &sink{TLS: bad, Implicit: true, Auth: users}, implicit: true, user: "box", pass: "s3cret", text: "verified certificate"},
		{name: "no STARTTLS offered", sink: &sink{Auth: users}, user: "box", pass: "s3cret", text: "does not offer STARTTLS"},
		{name: "login refused", sink: &sink{TLS: good, Auth: users}, user: "box", pass: "wrong", text: "refused the login of box"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ip, addr := "127.0.0.1", "127.0.0.1:0"
			if c.implicit {
				// The real port 465, on a loopback address of its own.
				ip = fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(250), 1+rand.IntN(250))
				addr = ip + ":465"
			}
			z := startDNS(t, `relay.test. A `+ip, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`)
			if ln, err := net.Listen("tcp", addr); err != nil {
				t.Skipf("cannot listen on port 465 (not root?): %v", err)
			} else {
				ln.Close()
			}
			s := startSink(t, c.sink, addr)
			_, p, _ := net.SplitHostPort(s.Addr)
			port := 0
			fmt.Sscan(p, &port)
			relay := &Relay{Host: "relay.test", Port: port, Username: c.user, Password: func() (string, error) { return c.pass, nil }}
			cl := newClient(t, Config{Resolver: z.resolver(), RootCAs: ca.Pool(), Relay: func() *Relay { return relay }})
			res := send(t, cl, msg("a@dest.test", "b@dest.test"))
			for _, r := range res {
				if !r.Relay || r.Host != "relay.test" {
					t.Fatalf("not through the relay: %s", describe(res))
				}
				if r.Delivered() != c.ok || !strings.Contains(r.Text, c.text) || r.Permanent {
					t.Fatalf("want ok=%v %q, got %s", c.ok, c.text, describe(res))
				}
			}
			txs := s.transactions()
			if !c.ok {
				if len(txs) != 0 {
					t.Fatalf("sink got %+v", txs)
				}
				return
			}
			if len(txs) != 1 || !txs[0].TLS || txs[0].Auth != c.user || len(txs[0].Rcpts) != 2 {
				t.Fatalf("sink got %+v", txs)
			}
		})
	}

	t.Run("ViaRelay without a smarthost", func(t *testing.T) {
		z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`)
		port := freePort(t)
		mx := startSink(t, &sink{}, at("127.0.0.2", port))
		cl := newClient(t, Config{Resolver: z.resolver(), Port: port})
		m := msg("a@dest.test")
		m.ViaRelay = true
		res := send(t, cl, m)
		if res[0].Delivered() || res[0].Permanent || !res[0].Relay || !strings.Contains(res[0].Text, "no smarthost") || mx.connections() != 0 {
			t.Fatal(describe(res))
		}
	})
	t.Run("direct mode with a smarthost for block answers", func(t *testing.T) {
		z := startDNS(t, `relay.test. A 127.0.0.1`, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`)
		port := freePort(t)
		mx := startSink(t, &sink{Rcpt: func(string) string {
			return "550 5.7.1 Service unavailable, Client host [127.0.0.1] blocked using Spamhaus"
		}}, at("127.0.0.2", port))
		rs := startSink(t, &sink{TLS: good, Auth: users}, "127.0.0.1:0")
		_, p, _ := net.SplitHostPort(rs.Addr)
		rport := 0
		fmt.Sscan(p, &rport)
		relay := &Relay{Host: "relay.test", Port: rport, Username: "box", Password: func() (string, error) { return "s3cret", nil }, FallbackOnly: true}
		counts := &metricstest.Counts{}
		cl := newClient(t, Config{Resolver: z.resolver(), Port: port, RootCAs: ca.Pool(), Relay: func() *Relay { return relay }, Metrics: counts})
		res := send(t, cl, msg("a@dest.test"))
		if !res[0].Blocked || res[0].Relay || res[0].Host != "mx1.dest.test" {
			t.Fatalf("direct attempt: %s", describe(res))
		}
		m := msg("a@dest.test")
		m.ViaRelay = true
		res = send(t, cl, m)
		if !res[0].Delivered() || !res[0].Relay {
			t.Fatalf("retry through the smarthost: %s", describe(res))
		}
		if len(rs.transactions()) != 1 || len(mx.transactions()) != 0 {
			t.Fatalf("relay got %d, MX got %d", len(rs.transactions()), len(mx.transactions()))
		}
		got := counts.Counts()
		for k, want := range map[string]int{
			"outbound recipient direct blocked": 1, "outbound recipient relay delivered": 1,
			"outbound connection opened tls": 1, "outbound connection opened plain": 1,
		} {
			if got[k] != want {
				t.Errorf("metrics %q = %d, want %d (all: %v)", k, got[k], want, got)
			}
		}
	})
}

// TestMTASTS: a policy in mode enforce refuses an MX host it does not
// list (temporary, nothing sent) and one without a verified certificate;
// a policy in mode testing only logs. The policy is served over HTTPS on
// loopback.
func TestMTASTS(t *testing.T) {
	ca := certtest.New(t)
	mxCert := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx1.dest.test", "mx2.dest.test")}}
	wrongCert := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "elsewhere.test")}}
	cases := []struct {
		name   string
		mode   string
		mx     string // the policy's mx line
		sink   *sink
		ok     bool
		text   string
		refuse int // MTA-STS refusals counted
		conns  int // connections the sink saw
	}{
		{name: "enforce: listed MX with a valid certificate", mode: "enforce", mx: "mx1.dest.test", sink: &sink{TLS: mxCert}, ok: true, conns: 1},
		{name: "enforce: MX not in the policy", mode: "enforce", mx: "mx.other.test", sink: &sink{TLS: mxCert}, text: "not listed in the MTA-STS policy", refuse: 1},
		{name: "enforce: certificate for another name", mode: "enforce", mx: "mx1.dest.test", sink: &sink{TLS: wrongCert}, text: "no TLS with a valid certificate", refuse: 1, conns: 1},
		{name: "enforce: TLS handshake fails", mode: "enforce", mx: "mx1.dest.test", sink: &sink{TLS: mxCert, BrokenTLS: true}, text: "no TLS with a valid certificate", refuse: 1, conns: 1},
		{name: "testing: TLS handshake fails, delivers without", mode: "testing", mx: "mx1.dest.test", sink: &sink{TLS: mxCert, BrokenTLS: true}, ok: true, conns: 2},
		{name: "enforce: no STARTTLS", mode: "enforce", mx: "*.dest.test", sink: &sink{}, text: "no TLS with a valid certificate", refuse: 1, conns: 1},
		{name: "testing: MX not in the policy delivers", mode: "testing", mx: "mx.other.test", sink: &sink{TLS: wrongCert}, ok: true, conns: 1},
		{name: "testing: no STARTTLS delivers", mode: "testing", mx: "mx1.dest.test", sink: &sink{}, ok: true, conns: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`,
				`_mta-sts.dest.test. TXT "v=STSv1; id=20260101"`)
			port := freePort(t)
			s := startSink(t, c.sink, at("127.0.0.2", port))
			policy := fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 86400\r\n", c.mode, c.mx)
			https := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, policy)
			}))
			https.Config.ErrorLog = log.New(io.Discard, "", 0)
			https.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mta-sts.dest.test")}}
			https.StartTLS()
			t.Cleanup(https.Close)
			cache, err := mtasts.New(mtasts.Config{
				Resolver:  z.resolver(),
				TLSConfig: &tls.Config{RootCAs: ca.Pool()},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, https.Listener.Addr().String())
				},
				FetchTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cache.Close)
			counts := &metricstest.Counts{}
			cl := newClient(t, Config{Resolver: z.resolver(), Port: port, RootCAs: ca.Pool(), MTASTS: cache, Metrics: counts})
			res := send(t, cl, msg("a@dest.test"))
			r := res[0]
			if r.Delivered() != c.ok || r.Permanent || !strings.Contains(r.Text, c.text) {
				t.Fatalf("want ok=%v %q, got %s", c.ok, c.text, describe(res))
			}
			if !c.ok && (r.Enhanced != "4.7.5" || !strings.Contains(r.Text, "MTA-STS policy of dest.test (mode enforce)")) {
				t.Fatalf("refusal text: %s", describe(res))
			}
			if n := counts.Counts()["outbound mta-sts refused"]; n != c.refuse {
				t.Errorf("%d MTA-STS refusals counted, want %d", n, c.refuse)
			}
			if n := s.connections(); n != c.conns {
				t.Errorf("%d connections, want %d", n, c.conns)
			}
			if c.ok == (len(s.transactions()) == 0) {
				t.Errorf("sink got %+v", s.transactions())
			}
		})
	}
}
