package smtpout

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/tlscert/certtest"
)

// TestRoute: MX order, the fallback to the next MX, the implicit MX, the
// null MX, NXDOMAIN and a DNS failure, against a DNS server and sinks on
// loopback.
func TestRoute(t *testing.T) {
	cases := []struct {
		name    string
		records []string
		sinks   map[string]*sink // by loopback address
		wantMX  string           // the host that took the message, "" for none
		perm    bool
		enh     string
		text    string
	}{
		{
			name: "lowest preference first",
			records: []string{`dest.test. MX 20 mx2.dest.test.`, `dest.test. MX 10 mx1.dest.test.`,
				`mx1.dest.test. A 127.0.0.2`, `mx2.dest.test. A 127.0.0.3`},
			sinks:  map[string]*sink{"127.0.0.2": {}, "127.0.0.3": {}},
			wantMX: "mx1.dest.test",
		},
		{
			name: "next MX when the first refuses connections",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `dest.test. MX 20 mx2.dest.test.`,
				`mx1.dest.test. A 127.0.0.2`, `mx2.dest.test. A 127.0.0.3`},
			sinks:  map[string]*sink{"127.0.0.3": {}},
			wantMX: "mx2.dest.test",
		},
		{
			name: "next MX after a 4xx greeting",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `dest.test. MX 20 mx2.dest.test.`,
				`mx1.dest.test. A 127.0.0.2`, `mx2.dest.test. A 127.0.0.3`},
			sinks:  map[string]*sink{"127.0.0.2": {Greeting: "421 4.3.2 busy"}, "127.0.0.3": {}},
			wantMX: "mx2.dest.test",
		},
		{
			name: "next MX after a 4xx to EHLO",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `dest.test. MX 20 mx2.dest.test.`,
				`mx1.dest.test. A 127.0.0.2`, `mx2.dest.test. A 127.0.0.3`},
			sinks:  map[string]*sink{"127.0.0.2": {EHLO: "421 4.3.2 go away"}, "127.0.0.3": {}},
			wantMX: "mx2.dest.test",
		},
		{
			name:    "next address of the same MX",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`, `mx1.dest.test. A 127.0.0.3`},
			sinks:   map[string]*sink{"127.0.0.3": {}},
			wantMX:  "mx1.dest.test",
		},
		{
			name:    "HELO when EHLO is not understood",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`},
			sinks:   map[string]*sink{"127.0.0.2": {EHLO: "500 5.5.1 what?"}},
			wantMX:  "mx1.dest.test",
		},
		{
			name:    "implicit MX: the domain's address",
			records: []string{`dest.test. A 127.0.0.2`},
			sinks:   map[string]*sink{"127.0.0.2": {}},
			wantMX:  "dest.test",
		},
		{
			name:    "null MX refused at once",
			records: []string{`dest.test. MX 0 .`, `dest.test. A 127.0.0.2`},
			sinks:   map[string]*sink{"127.0.0.2": {}},
			perm:    true, enh: "5.1.10", text: "null MX",
		},
		{
			name:    "NXDOMAIN",
			records: []string{`other.test. A 127.0.0.2`},
			perm:    true, enh: "5.1.2", text: "does not exist",
		},
		{
			name:    "no MX and no address",
			records: []string{`dest.test. TXT "nothing"`},
			text:    "no address",
		},
		{
			name:    "every MX down: temporary",
			records: []string{`dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`},
			text:    "connect",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := startDNS(t, c.records...)
			port := freePort(t)
			for ip, s := range c.sinks {
				startSink(t, s, at(ip, port))
			}
			cl := newClient(t, Config{Resolver: z.resolver(), Port: port})
			res := send(t, cl, msg("b@dest.test"))
			r := res[0]
			if c.wantMX != "" {
				if !r.Delivered() || r.Host != c.wantMX {
					t.Fatalf("want delivered by %s, got %s", c.wantMX, describe(res))
				}
				return
			}
			if r.Delivered() || r.Permanent != c.perm || r.Enhanced != c.enh || !strings.Contains(r.Text, c.text) {
				t.Fatalf("want permanent=%v %q %q, got %s", c.perm, c.enh, c.text, describe(res))
			}
			for ip, s := range c.sinks {
				if n := s.connections(); n != 0 {
					t.Errorf("sink %s: %d connections, want none", ip, n)
				}
			}
		})
	}
	t.Run("DNS failure is temporary", func(t *testing.T) {
		z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`)
		z.SetRcode(dns.RcodeServerFailure, "dest.test.")
		cl := newClient(t, Config{Resolver: z.resolver(), Port: freePort(t)})
		res := send(t, cl, msg("b@dest.test"))
		if res[0].Delivered() || res[0].Permanent || !strings.Contains(res[0].Text, "MX lookup") {
			t.Fatalf("got %s", describe(res))
		}
	})
	t.Run("equal preferences are shuffled", func(t *testing.T) {
		z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`, `dest.test. MX 10 mx2.dest.test.`,
			`mx1.dest.test. A 127.0.0.2`, `mx2.dest.test. A 127.0.0.3`)
		cl := newClient(t, Config{Resolver: z.resolver(), Port: 1})
		seen := map[string]bool{}
		for range 40 {
			hosts, f := cl.route(t.Context(), "dest.test")
			if f != nil || len(hosts) != 2 {
				t.Fatalf("route: %v %v", hosts, f)
			}
			seen[hosts[0]] = true
		}
		if len(seen) != 2 {
			t.Fatalf("first host always %v", seen)
		}
	})
}

// TestTransaction: per-recipient answers, pipelining, STARTTLS, reuse.
func TestTransaction(t *testing.T) {
	setup := func(t *testing.T, s *sink, cfg Config) (*Client, *sink) {
		z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`)
		port := freePort(t)
		startSink(t, s, at("127.0.0.2", port))
		cfg.Resolver, cfg.Port = z.resolver(), port
		return newClient(t, cfg), s
	}

	t.Run("per-recipient answers", func(t *testing.T) {
		cl, s := setup(t, &sink{Pipelining: true, Rcpt: func(r string) string {
			switch r {
			case "later@dest.test":
				return "450 4.2.0 try later"
			case "nobody@dest.test":
				return "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 Please try again."
			case "full@dest.test":
				return "552 5.2.2 mailbox full"
			}
			return ""
		}}, Config{})
		res := send(t, cl, msg("ok@dest.test", "later@dest.test", "nobody@dest.test", "full@dest.test"))
		want := []struct {
			code      int
			enh       string
			permanent bool
		}{{250, "2.0.0", false}, {450, "4.2.0", false}, {550, "5.1.1", true}, {552, "5.2.2", true}}
		for i, w := range want {
			r := res[i]
			if r.Code != w.code || r.Enhanced != w.enh || r.Permanent != w.permanent || r.Blocked || r.Host != "mx1.dest.test" {
				t.Errorf("recipient %d: want %d %s permanent=%v, got %s", i, w.code, w.enh, w.permanent, describe(res[i:i+1]))
			}
		}
		if want := "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 Please try again."; res[2].Text != want {
			t.Errorf("multi-line reply: got %q, want %q", res[2].Text, want)
		}
		txs := s.transactions()
		if len(txs) != 1 || len(txs[0].Rcpts) != 1 || txs[0].Rcpts[0] != "ok@dest.test" || txs[0].From != "a@box.test" {
			t.Fatalf("sink got %+v", txs)
		}
		if !strings.Contains(txs[0].Data, "\r\n.dot line\r\n") {
			t.Errorf("dot-stuffing: data %q", txs[0].Data)
		}
	})
	t.Run("final answer 4xx and 5xx", func(t *testing.T) {
		for _, final := range []string{"451 4.3.0 queue full", "554 5.6.0 content rejected"} {
			cl, _ := setup(t, &sink{Final: final}, Config{})
			res := send(t, cl, msg("a@dest.test", "b@dest.test"))
			for _, r := range res {
				if r.Text != final || r.Permanent != (final[0] == '5') {
					t.Fatalf("want %q, got %s", final, describe(res))
				}
			}
		}
	})
	t.Run("MAIL parameters", func(t *testing.T) {
		cl, s := setup(t, &sink{}, Config{})
		m := msg("a@dest.test")
		m.EightBit, m.SMTPUTF8 = true, true
		res := send(t, cl, m)
		txs := s.transactions()
		if !res[0].Delivered() || len(txs) != 1 {
			t.Fatalf("%s %+v", describe(res), txs)
		}
		if want := fmt.Sprintf("MAIL FROM:<a@box.test> SIZE=%d BODY=8BITMIME SMTPUTF8", m.Size); txs[0].Mail != want {
			t.Fatalf("got %q, want %q", txs[0].Mail, want)
		}
	})
	t.Run("too large for the server", func(t *testing.T) {
		cl, s := setup(t, &sink{}, Config{})
		big := strings.Repeat("x", 1000001)
		m := msg("a@dest.test")
		m.Body, m.Size = strings.NewReader(big), int64(len(big))
		res := send(t, cl, m)
		if !res[0].Permanent || res[0].Enhanced != "5.3.4" || len(s.transactions()) != 0 {
			t.Fatal(describe(res))
		}
	})
	t.Run("SMTPUTF8 not offered", func(t *testing.T) {
		cl, s := setup(t, &sink{NoUTF8: true}, Config{})
		m := msg("pépé@dest.test")
		m.SMTPUTF8 = true
		res := send(t, cl, m)
		if !res[0].Permanent || res[0].Enhanced != "5.6.7" || len(s.transactions()) != 0 {
			t.Fatal(describe(res))
		}
	})
	t.Run("pipelining used when offered", func(t *testing.T) {
		for _, offered := range []bool{true, false} {
			cl, s := setup(t, &sink{Pipelining: offered}, Config{})
			res := send(t, cl, msg("a@dest.test", "b@dest.test"))
			txs := s.transactions()
			if !res[0].Delivered() || !res[1].Delivered() || len(txs) != 1 || len(txs[0].Rcpts) != 2 {
				t.Fatalf("offered=%v: %s %+v", offered, describe(res), txs)
			}
			if txs[0].Pipelined != offered {
				t.Fatalf("PIPELINING offered=%v, used=%v", offered, txs[0].Pipelined)
			}
		}
	})
	t.Run("STARTTLS used when offered", func(t *testing.T) {
		ca := certtest.New(t)
		cert := ca.Issue(t, "someone-else.test") // opportunistic: need not verify
		cl, s := setup(t, &sink{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, Config{})
		res := send(t, cl, msg("a@dest.test"))
		txs := s.transactions()
		if !res[0].Delivered() || len(txs) != 1 || !txs[0].TLS {
			t.Fatalf("%s %+v", describe(res), txs)
		}
	})
	t.Run("failed STARTTLS: again without TLS", func(t *testing.T) {
		ca := certtest.New(t)
		cl, s := setup(t, &sink{BrokenTLS: true, TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx1.dest.test")}}}, Config{})
		res := send(t, cl, msg("a@dest.test"))
		txs := s.transactions()
		if !res[0].Delivered() || len(txs) != 1 || txs[0].TLS || s.connections() != 2 {
			t.Fatalf("%s %+v, %d connections", describe(res), txs, s.connections())
		}
	})
	t.Run("one connection for two messages", func(t *testing.T) {
		cl, s := setup(t, &sink{Pipelining: true}, Config{})
		for range 2 {
			if res := send(t, cl, msg("a@dest.test")); !res[0].Delivered() {
				t.Fatal(describe(res))
			}
		}
		txs := s.transactions()
		if len(txs) != 2 || s.connections() != 1 || txs[1].Conn != 1 {
			t.Fatalf("%d connections for %+v", s.connections(), txs)
		}
	})
	t.Run("a message limit per connection", func(t *testing.T) {
		cl, s := setup(t, &sink{}, Config{MaxMessagesPerConn: 2})
		for range 3 {
			if res := send(t, cl, msg("a@dest.test")); !res[0].Delivered() {
				t.Fatal(describe(res))
			}
		}
		if n := s.connections(); n != 2 {
			t.Fatalf("%d connections for 3 messages, 2 a connection", n)
		}
	})
	t.Run("idle connection expires", func(t *testing.T) {
		cl, s := setup(t, &sink{}, Config{IdleTimeout: 200 * time.Millisecond})
		send(t, cl, msg("a@dest.test"))
		time.Sleep(600 * time.Millisecond)
		send(t, cl, msg("a@dest.test"))
		if n := s.connections(); n != 2 {
			t.Fatalf("%d connections, want 2", n)
		}
	})
	t.Run("concurrent sends", func(t *testing.T) {
		cl, s := setup(t, &sink{Pipelining: true}, Config{})
		done := make(chan []Result)
		for range 8 {
			go func() { done <- cl.Send(t.Context(), msg("a@dest.test")) }()
		}
		for range 8 {
			if res := <-done; len(res) != 1 || !res[0].Delivered() {
				t.Fatal(describe(res))
			}
		}
		if n := len(s.transactions()); n != 8 {
			t.Fatalf("%d transactions", n)
		}
	})
	t.Run("a stalled server does not block", func(t *testing.T) {
		cl, _ := setup(t, &sink{Stall: true}, Config{CommandTimeout: 300 * time.Millisecond})
		start := time.Now()
		res := send(t, cl, msg("a@dest.test"))
		if res[0].Delivered() || res[0].Permanent || !strings.Contains(res[0].Text, "greeting") {
			t.Fatal(describe(res))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cl, _ := setup(t, &sink{Stall: true}, Config{})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		res := cl.Send(ctx, msg("a@dest.test"))
		if res[0].Delivered() || res[0].Permanent {
			t.Fatal(describe(res))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("an idle connection the server closed is replaced", func(t *testing.T) {
		cl, s := setup(t, &sink{HangUp: true}, Config{})
		for i := range 2 {
			if res := send(t, cl, msg("a@dest.test")); !res[0].Delivered() {
				t.Fatalf("message %d: %s", i, describe(res))
			}
		}
		if n, txs := s.connections(), len(s.transactions()); n != 2 || txs != 2 {
			t.Fatalf("%d connections, %d transactions", n, txs)
		}
	})
	t.Run("Close says QUIT to the idle connections", func(t *testing.T) {
		cl, s := setup(t, &sink{}, Config{})
		send(t, cl, msg("a@dest.test"))
		if n := s.quitCount(); n != 0 {
			t.Fatalf("%d QUIT before Close", n)
		}
		cl.Close()
		if n := s.quitCount(); n != 1 {
			t.Fatalf("%d QUIT after Close", n)
		}
	})
	t.Run("block answer", func(t *testing.T) {
		cl, _ := setup(t, &sink{Rcpt: func(string) string {
			return "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
		}}, Config{})
		res := send(t, cl, msg("a@dest.test"))
		if !res[0].Blocked || !res[0].Permanent || res[0].Relay {
			t.Fatal(describe(res))
		}
	})
}
