package smtpout

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/mailauth"
)

// startDNS serves records (zone-file syntax) until the test ends.
func startDNS(t *testing.T, records ...string) *testDNS {
	return &testDNS{dnstest.New(t, records...)}
}

type testDNS struct{ *dnstest.Server }

// resolver is a mailauth resolver asking the server.
func (z *testDNS) resolver() *mailauth.Resolver {
	return mailauth.NewResolver([]string{z.Addr()}, time.Second)
}

// sinkTx is one transaction a sink received.
type sinkTx struct {
	Conn      int // which connection of the sink (1, 2...)
	From      string
	Mail      string   // the whole MAIL command
	Rcpts     []string // accepted
	Data      string
	TLS       bool
	Pipelined bool // MAIL, RCPT and DATA arrived in one read
	Auth      string
}

// sink is a scripted SMTP server on loopback, for the client's tests.
type sink struct {
	// Set before the first connection.
	Greeting   string                   // default "220 sink ESMTP"
	EHLO       string                   // a reply instead of 250 (e.g. "421 ..."); "500" makes the client fall back to HELO
	Pipelining bool                     // offers PIPELINING
	TLS        *tls.Config              // offers STARTTLS with it
	Implicit   bool                     // TLS from the start (port 465)
	Auth       map[string]string        // offers AUTH PLAIN LOGIN: user → password
	AuthMechs  string                   // default "PLAIN LOGIN"
	Rcpt       func(rcpt string) string // the RCPT reply; nil is 250
	Final      string                   // the reply to the final dot; default 250
	BrokenTLS  bool                     // answers STARTTLS 220 then garbage
	Stall      bool                     // accepts and never answers
	NoUTF8     bool                     // does not offer SMTPUTF8
	HangUp     bool                     // closes the connection after each transaction, without a word

	Addr string
	ln   net.Listener

	mu    sync.Mutex
	conns int
	quits int
	txs   []sinkTx
	wg    sync.WaitGroup
}

// startSink serves s on addr ("127.0.0.N:port") until the test ends.
func startSink(t *testing.T, s *sink, addr string) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			n := s.conns
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c, n) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *sink) transactions() []sinkTx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkTx(nil), s.txs...)
}

func (s *sink) quitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quits
}

func (s *sink) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *sink) serve(c net.Conn, n int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if s.Stall {
		_, _ = c.Read(make([]byte, 1))
		return
	}
	tlsOn := false
	if s.Implicit {
		tc := tls.Server(c, s.TLS)
		if tc.Handshake() != nil {
			return
		}
		c, tlsOn = tc, true
	}
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(lines ...string) {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		w.Flush()
	}
	if s.Greeting != "" {
		say(s.Greeting)
		if !strings.HasPrefix(s.Greeting, "220") {
			return
		}
	} else {
		say("220 sink ESMTP")
	}
	var tx *sinkTx
	auth := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			if s.EHLO != "" {
				say(s.EHLO)
				if strings.HasPrefix(s.EHLO, "421") {
					return
				}
				continue
			}
			lines := []string{"250-sink", "250-SIZE 1000000", "250-8BITMIME", "250-ENHANCEDSTATUSCODES"}
			if s.Pipelining {
				lines = append(lines, "250-PIPELINING")
			}
			if s.TLS != nil && !tlsOn && !s.Implicit {
				lines = append(lines, "250-STARTTLS")
			}
			if s.Auth != nil {
				mechs := s.AuthMechs
				if mechs == "" {
					mechs = "PLAIN LOGIN"
				}
				lines = append(lines, "250-AUTH "+mechs)
			}
			if !s.NoUTF8 {
				lines = append(lines, "250-SMTPUTF8")
			}
			lines = append(lines, "250 HELP")
			say(lines...)
		case "HELO":
			say("250 sink")
		case "STARTTLS":
			say("220 2.0.0 go ahead")
			if s.BrokenTLS {
				say("this is not TLS at all")
				return
			}
			tc := tls.Server(c, s.TLS)
			if tc.Handshake() != nil {
				return
			}
			c, tlsOn = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case "AUTH":
			mech, initial, _ := strings.Cut(arg, " ")
			var user, pass string
			switch strings.ToUpper(mech) {
			case "PLAIN":
				b, _ := base64.StdEncoding.DecodeString(initial)
				parts := strings.Split(string(b), "\x00")
				if len(parts) == 3 {
					user, pass = parts[1], parts[2]
				}
			case "LOGIN":
				say("334 VXNlcm5hbWU6")
				l1, _ := r.ReadString('\n')
				say("334 UGFzc3dvcmQ6")
				l2, _ := r.ReadString('\n')
				u, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(l1))
				p, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(l2))
				user, pass = string(u), string(p)
			}
			if want, ok := s.Auth[user]; ok && want == pass {
				auth = user
				say("235 2.7.0 Authentication successful")
			} else {
				say("535 5.7.8 Error: authentication failed")
			}
		case "MAIL":
			from := strings.TrimPrefix(arg, "FROM:<")
			from, _, _ = strings.Cut(from, ">")
			// Pipelined: the rest of the envelope came with MAIL.
			buffered, _ := r.Peek(r.Buffered())
			tx = &sinkTx{Conn: n, From: from, Mail: line, TLS: tlsOn, Auth: auth, Pipelined: strings.Contains(string(buffered), "DATA\r\n")}
			say("250 2.1.0 Ok")
		case "RCPT":
			rcpt := strings.TrimPrefix(arg, "TO:<")
			rcpt, _, _ = strings.Cut(rcpt, ">")
			ans := "250 2.1.5 Ok"
			if s.Rcpt != nil {
				if a := s.Rcpt(rcpt); a != "" {
					ans = a
				}
			}
			if tx == nil {
				ans = "503 5.5.1 MAIL first"
			} else if ans[0] == '2' {
				tx.Rcpts = append(tx.Rcpts, rcpt)
			}
			say(strings.Split(ans, "\n")...)
		case "DATA":
			if tx == nil || len(tx.Rcpts) == 0 {
				say("554 5.5.1 No valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			tx.Data = b.String()
			final := s.Final
			if final == "" {
				final = "250 2.0.0 Ok: queued"
			}
			if final[0] == '2' {
				s.mu.Lock()
				s.txs = append(s.txs, *tx)
				s.mu.Unlock()
			}
			tx = nil
			say(final)
			if s.HangUp {
				return
			}
		case "RSET":
			tx = nil
			say("250 2.0.0 Ok")
		case "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			s.mu.Lock()
			s.quits++
			s.mu.Unlock()
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// freePort returns a TCP port free on 127.0.0.2, for sinks on several
// loopback addresses at the same port (the client's Config.Port).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(p)
	return port
}

func at(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// msg is a test message to dest.test.
func msg(rcpts ...string) *Message {
	body := "From: a@box.test\r\nTo: b@dest.test\r\nSubject: test\r\n\r\nHello.\r\n.dot line\r\n"
	return &Message{ID: "q1", From: "a@box.test", Domain: "dest.test", Rcpts: rcpts,
		Body: strings.NewReader(body), Size: int64(len(body))}
}

// newClient returns a client with short limits, closed at the end.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	cfg.ConnectTimeout = 2 * time.Second
	cfg.Hostname = func() string { return "box.test" }
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *Client, m *Message) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res := c.Send(ctx, m)
	if len(res) != len(m.Rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(m.Rcpts))
	}
	return res
}

func describe(res []Result) string {
	var b strings.Builder
	for _, r := range res {
		fmt.Fprintf(&b, "\n  %s: %d %s perm=%v blocked=%v relay=%v host=%s %q", r.Rcpt, r.Code, r.Enhanced, r.Permanent, r.Blocked, r.Relay, r.Host, r.Text)
	}
	return b.String()
}
