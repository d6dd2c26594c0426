package tests

// Helpers of the end-to-end tests of mail out (outbound_*_test.go): the
// outside world of a box on loopback. A DNS server the daemon is pointed
// at (--resolver), remote mail servers on addresses of 127.0.0.0/8 that
// share one port per test (--remote-port), a scripted Go SMTP sink and
// Postfix's smtp-sink as those servers, a test CA for their certificates,
// and the independent readers of what the box sends: Debian's
// python3-dkim and python's email package.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/testenv"
	"mailfountain.dev/mailfountain/runtime/tlscert/certtest"
)

// waitUntil polls cond until it returns nil, failing the test with its
// last error after d. Mail out waits for backoffs and lifetimes, longer
// than waitFor's 15 s may allow on a loaded machine.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out (%s) waiting for %s: %v", d, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- DNS ----

// fakeDNS is an authoritative DNS server on 127.0.0.1 (dnstest's, with
// AA) whose records a test adds and changes while it runs. A name with
// records, or with records under it, exists: asked for a type it lacks, it
// answers NOERROR with no records (NODATA); any other name is NXDOMAIN.
type fakeDNS struct{ *dnstest.Server }

// startFakeDNS serves records (zone file syntax: "a.example. MX 10 mx.a.example.")
// until the test ends.
func startFakeDNS(t *testing.T, records ...string) *fakeDNS {
	t.Helper()
	z := &fakeDNS{dnstest.New(t, records...)}
	z.SetHandler(func(w dns.ResponseWriter, r *dns.Msg) {
		m := z.Answer(r)
		m.Authoritative = true
		_ = w.WriteMsg(dnstest.Truncate(w, r, m))
	})
	return z
}

// txts returns the TXT records served, by name (lower case, no final
// dot), their strings joined: what a DKIM verifier reads.
func (z *fakeDNS) txts() map[string]string {
	out := map[string]string{}
	for _, rr := range z.Records() {
		if txt, ok := rr.(*dns.TXT); ok {
			out[strings.TrimSuffix(strings.ToLower(txt.Hdr.Name), ".")] = strings.Join(txt.Txt, "")
		}
	}
	return out
}

// lookup asks the server for name's records of type typ ("MX", "A",
// "TXT"...) with dig when it is installed, else with Go's resolver
// pointed at it, and returns them as dig +short prints them, sorted.
func (z *fakeDNS) lookup(t *testing.T, name, typ string) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(z.Addr())
	if dig, err := exec.LookPath("dig"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, dig, "+short", "+tries=1", "+time=3", "@"+host, "-p", port, name, typ).Output()
		if err != nil {
			t.Fatalf("dig %s %s: %v", name, typ, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		lines = slices.DeleteFunc(lines, func(s string) bool { return s == "" })
		slices.Sort(lines)
		return lines
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, z.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	var err error
	switch typ {
	case "MX":
		var mxs []*net.MX
		mxs, err = r.LookupMX(ctx, name)
		for _, mx := range mxs {
			out = append(out, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
		}
	case "A", "AAAA":
		var ips []net.IP
		ips, err = r.LookupIP(ctx, map[string]string{"A": "ip4", "AAAA": "ip6"}[typ], name)
		for _, ip := range ips {
			out = append(out, ip.String())
		}
	case "TXT":
		var txts []string
		txts, err = r.LookupTXT(ctx, name)
		for _, s := range txts {
			out = append(out, strconv.Quote(s))
		}
	default:
		t.Fatalf("lookup of %s records without dig", typ)
	}
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && (dnsErr.IsNotFound || dnsErr.Err == "no such host") {
		err = nil // dig +short prints nothing either
	}
	if err != nil {
		t.Fatalf("lookup %s %s: %v", name, typ, err)
	}
	slices.Sort(out)
	return out
}

// ---- a test CA ----

// serverTLS is the TLS configuration of a server whose certificate, of
// ca, names hosts (DNS names or IP addresses).
func serverTLS(t *testing.T, ca *certtest.CA, hosts ...string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, hosts...)}}
}

// ---- the remote network ----

// remoteNet is the outside world of one test: its remote servers listen
// on addresses of 127.0.0.0/8 other than 127.0.0.1, all on one port, the
// daemon's --remote-port. The port is held on 127.0.0.1 for the test's
// life, so that no other test (nor the daemon's own listeners) takes it:
// each parallel test has its own port and may use any address.
type remoteNet struct {
	port    int
	reserve net.Listener

	mu   sync.Mutex
	next int
}

func newRemoteNet(t *testing.T) *remoteNet {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &remoteNet{port: ln.Addr().(*net.TCPAddr).Port, reserve: ln, next: 10}
}

// ip returns an address of the network no server of this test uses yet:
// nothing listens there until the test starts a server on it, so a
// connection to it is refused.
func (n *remoteNet) ip() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	return fmt.Sprintf("127.0.%d.%d", n.next/250, n.next%250+2)
}

// ---- the Go SMTP sink ----

// sinkOpts are what a sink offers.
type sinkOpts struct {
	Hostname     string      // of its greeting and EHLO; "mx.sink.test" if empty
	TLS          *tls.Config // offers STARTTLS when set
	NoPipelining bool
	// Auth (user → password) offers AUTH PLAIN and LOGIN (after STARTTLS
	// when TLS is set) and requires it before MAIL.
	Auth map[string]string
}

// sinkConn is the record of one connection.
type sinkConn struct {
	ID       int
	EHLO     string
	TLS      bool
	AuthUser string
	Closed   bool
}

// sinkTxn is the record of one mail transaction.
type sinkTxn struct {
	Conn     int
	TLS      bool
	AuthUser string
	From     string // the reverse path, "" for <>
	Params   string // MAIL FROM's parameters
	// Pipelined: when MAIL FROM was read, the next command was already
	// there: the client did not wait for the answer (RFC 2920).
	Pipelined bool
	Rcpts     []string // accepted
	Refused   []string // "addr: answer"
	Data      []byte   // as received, dot-unstuffed; nil if DATA was not reached
	Reply     string   // the answer to the end of DATA; "" if none was given
	Acked     bool     // Reply is 2xx: the message was accepted
}

// sink is a scripted SMTP server on ip:port: it answers as told per
// command and recipient, in order of attempts, and records every
// connection and transaction.
type sink struct {
	addr string
	opts sinkOpts
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	script  map[string][]string // "CMD key" → answers, the last one kept
	conns   []*sinkConn
	txns    []sinkTxn
	open    map[net.Conn]bool
	hold    chan struct{} // while not nil, the answer to the end of DATA waits for it to close
	dropAll bool          // a held transaction's connection is closed, not answered
	held    int           // transactions waiting at the end of DATA
}

// startSink runs a sink on ip:port until the test ends.
func startSink(t *testing.T, ip string, port int, opts sinkOpts) *sink {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "mx.sink.test"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("sink on %s:%d: %v", ip, port, err)
	}
	s := &sink{addr: ln.Addr().String(), opts: opts, ln: ln, done: make(chan struct{}),
		script: map[string][]string{}, open: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	t.Cleanup(s.close)
	return s
}

// sink runs a sink on a new address of n.
func (n *remoteNet) sink(t *testing.T, opts sinkOpts) *sink {
	t.Helper()
	return startSink(t, n.ip(), n.port, opts)
}

func (s *sink) ip() string {
	h, _, _ := net.SplitHostPort(s.addr)
	return h
}

func (s *sink) close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sink) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			s.serve(c)
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
			c.Close()
		})
	}
}

// answer scripts the answers to cmd: "CONNECT" (the greeting), "EHLO",
// "MAIL", "RCPT" (key: the recipient, lower case; "" for any other) or
// "DATA" (the answer after the final dot). Each occurrence takes the next
// answer; the last one stays. An answer is "451 4.3.0 text", several
// lines joined by "\n" ("550-5.1.1 a\n550 5.1.1 b").
func (s *sink) answer(cmd, key string, answers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[cmd+" "+strings.ToLower(key)] = answers
}

// reply returns the scripted answer to cmd key, or def.
func (s *sink) reply(cmd, key, def string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := cmd + " " + strings.ToLower(key)
	as, ok := s.script[k]
	if !ok {
		k = cmd + " "
		as, ok = s.script[k]
	}
	if !ok || len(as) == 0 {
		return def
	}
	if len(as) > 1 {
		s.script[k] = as[1:]
	}
	return as[0]
}

// holdData makes the answers to the end of DATA wait until release is
// called: answer true gives them, false closes their connections
// without an answer (the client, killed meanwhile, is gone).
func (s *sink) holdData() (release func(answer bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold := make(chan struct{})
	s.hold = hold
	var once sync.Once
	return func(answer bool) {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.dropAll = !answer
			s.mu.Unlock()
			close(hold)
		})
	}
}

// heldNow is the number of transactions waiting at the end of DATA.
func (s *sink) heldNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// transactions returns a copy of the records of the transactions.
func (s *sink) transactions() []sinkTxn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.txns)
}

// connections returns a copy of the records of the connections.
func (s *sink) connections() []sinkConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkConn
	for _, c := range s.conns {
		out = append(out, *c)
	}
	return out
}

// accepted returns the transactions whose message was accepted.
func (s *sink) accepted() []sinkTxn {
	return slices.DeleteFunc(s.transactions(), func(x sinkTxn) bool { return !x.Acked })
}

// rcptAttempts counts the RCPT commands for addr, accepted or refused.
func (s *sink) rcptAttempts(addr string) int {
	n := 0
	for _, x := range s.transactions() {
		for _, r := range x.Rcpts {
			if strings.EqualFold(r, addr) {
				n++
			}
		}
		for _, r := range x.Refused {
			if a, _, _ := strings.Cut(r, ": "); strings.EqualFold(a, addr) {
				n++
			}
		}
	}
	return n
}

// waitAccepted waits until n messages have been accepted and returns them.
func (s *sink) waitAccepted(t *testing.T, n int, d time.Duration) []sinkTxn {
	t.Helper()
	var got []sinkTxn
	waitUntil(t, fmt.Sprintf("%d messages accepted by the sink %s", n, s.addr), d, func() error {
		got = s.accepted()
		if len(got) < n {
			return fmt.Errorf("%d accepted; transactions: %s", len(got), s.describe())
		}
		return nil
	})
	return got
}

// describe summarises the transactions, for failure messages.
func (s *sink) describe() string {
	var b strings.Builder
	for _, x := range s.transactions() {
		fmt.Fprintf(&b, "\n  conn %d tls=%v auth=%q MAIL FROM:<%s> rcpts=%v refused=%v data=%d bytes reply=%q",
			x.Conn, x.TLS, x.AuthUser, x.From, x.Rcpts, x.Refused, len(x.Data), x.Reply)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// sinkSession is one connection's state.
type sinkSession struct {
	s    *sink
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	rec  *sinkConn
	txn  *sinkTxn
	ehlo bool
}

func (ss *sinkSession) send(answer string) error {
	for _, l := range strings.Split(answer, "\n") {
		ss.w.WriteString(l)
		ss.w.WriteString("\r\n")
	}
	// Answers of pipelined commands go out together (RFC 2920, 3.2).
	if ss.r.Buffered() == 0 {
		return ss.w.Flush()
	}
	return nil
}

func (ss *sinkSession) readLine() (string, error) {
	if err := ss.w.Flush(); err != nil {
		return "", err
	}
	ss.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	l, err := ss.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(l) > 10000 {
		return "", errors.New("line too long")
	}
	return strings.TrimRight(l, "\r\n"), nil
}

// endTxn records the current transaction, if any.
func (ss *sinkSession) endTxn() {
	if ss.txn == nil {
		return
	}
	ss.s.mu.Lock()
	ss.s.txns = append(ss.s.txns, *ss.txn)
	ss.s.mu.Unlock()
	ss.txn = nil
}

func (s *sink) serve(c net.Conn) {
	ss := &sinkSession{s: s, conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	s.mu.Lock()
	ss.rec = &sinkConn{ID: len(s.conns) + 1}
	s.conns = append(s.conns, ss.rec)
	s.mu.Unlock()
	defer func() {
		ss.endTxn()
		s.mu.Lock()
		ss.rec.Closed = true
		s.mu.Unlock()
	}()
	greeting := s.reply("CONNECT", "", "220 "+s.opts.Hostname+" ESMTP sink")
	if ss.send(greeting) != nil || !strings.HasPrefix(greeting, "2") || ss.w.Flush() != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		var answer string
		switch verb {
		case "EHLO", "HELO":
			ss.endTxn()
			ss.rec.EHLO = arg
			ss.ehlo = true
			answer = s.reply("EHLO", "", "")
			if answer == "" {
				answer = ss.ehloAnswer(verb)
			}
		case "STARTTLS":
			if s.opts.TLS == nil || ss.rec.TLS {
				answer = "502 5.5.1 no STARTTLS here"
				break
			}
			if err := ss.send("220 2.0.0 go ahead"); err != nil {
				return
			}
			ss.w.Flush()
			tc := tls.Server(c, s.opts.TLS)
			tc.SetDeadline(time.Now().Add(30 * time.Second))
			if err := tc.Handshake(); err != nil {
				return
			}
			tc.SetDeadline(time.Time{})
			ss.conn, ss.r, ss.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
			s.mu.Lock()
			ss.rec.TLS = true
			s.mu.Unlock()
			ss.ehlo = false
			continue
		case "AUTH":
			answer = ss.auth(arg)
		case "MAIL":
			switch {
			case !ss.ehlo:
				answer = "503 5.5.1 EHLO first"
			case s.opts.Auth != nil && ss.rec.AuthUser == "":
				answer = "530 5.7.0 authentication required"
			default:
				ss.endTxn()
				from, params := pathArg(arg, "FROM:")
				ss.txn = &sinkTxn{Conn: ss.rec.ID, TLS: ss.rec.TLS, AuthUser: ss.rec.AuthUser, From: from, Params: params,
					Pipelined: ss.r.Buffered() > 0}
				answer = s.reply("MAIL", "", "250 2.1.0 ok")
				if !strings.HasPrefix(answer, "2") {
					ss.endTxn()
				}
			}
		case "RCPT":
			if ss.txn == nil {
				answer = "503 5.5.1 MAIL first"
				break
			}
			to, _ := pathArg(arg, "TO:")
			answer = s.reply("RCPT", to, "250 2.1.5 ok")
			if strings.HasPrefix(answer, "2") {
				ss.txn.Rcpts = append(ss.txn.Rcpts, to)
			} else {
				ss.txn.Refused = append(ss.txn.Refused, to+": "+answer)
			}
		case "DATA":
			if ss.txn == nil || len(ss.txn.Rcpts) == 0 {
				answer = "554 5.5.1 no valid recipients"
				ss.endTxn() // a pipelining client sends DATA anyway: the transaction is over
				break
			}
			if !ss.data() {
				return
			}
			continue
		case "RSET":
			ss.endTxn()
			answer = "250 2.0.0 ok"
		case "NOOP":
			answer = "250 2.0.0 ok"
		case "QUIT":
			ss.endTxn()
			ss.send("221 2.0.0 bye")
			ss.w.Flush()
			return
		default:
			answer = "500 5.5.2 unknown command"
		}
		if err := ss.send(answer); err != nil {
			return
		}
		if strings.HasPrefix(answer, "421") {
			ss.w.Flush()
			return
		}
	}
}

func (ss *sinkSession) ehloAnswer(verb string) string {
	if verb == "HELO" {
		return "250 " + ss.s.opts.Hostname
	}
	lines := []string{ss.s.opts.Hostname, "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 52428800"}
	if !ss.s.opts.NoPipelining {
		lines = append(lines, "PIPELINING")
	}
	if ss.s.opts.TLS != nil && !ss.rec.TLS {
		lines = append(lines, "STARTTLS")
	}
	if ss.s.opts.Auth != nil && (ss.s.opts.TLS == nil || ss.rec.TLS) {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	for i := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		lines[i] = "250" + sep + lines[i]
	}
	return strings.Join(lines, "\n")
}

// auth runs AUTH PLAIN or LOGIN (RFC 4954, 4616).
func (ss *sinkSession) auth(arg string) string {
	s := ss.s
	if s.opts.Auth == nil || (s.opts.TLS != nil && !ss.rec.TLS) {
		return "502 5.5.1 no AUTH here"
	}
	if ss.rec.AuthUser != "" {
		return "503 5.5.1 already authenticated"
	}
	mech, initial, _ := strings.Cut(arg, " ")
	ask := func(challenge string) (string, bool) {
		if ss.send("334 "+challenge) != nil {
			return "", false
		}
		l, err := ss.readLine()
		if err != nil || l == "*" {
			return "", false
		}
		b, err := base64.StdEncoding.DecodeString(l)
		return string(b), err == nil
	}
	var user, pass string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		resp := initial
		var ok bool
		if resp == "" {
			if resp, ok = ask(""); !ok {
				return "501 5.5.2 cancelled"
			}
		} else {
			b, err := base64.StdEncoding.DecodeString(resp)
			if err != nil {
				return "501 5.5.2 bad base64"
			}
			resp = string(b)
		}
		parts := strings.Split(resp, "\x00")
		if len(parts) != 3 {
			return "501 5.5.2 bad PLAIN response"
		}
		user, pass = parts[1], parts[2]
	case "LOGIN":
		var ok bool
		if initial != "" {
			b, err := base64.StdEncoding.DecodeString(initial)
			if err != nil {
				return "501 5.5.2 bad base64"
			}
			user = string(b)
		} else if user, ok = ask(base64.StdEncoding.EncodeToString([]byte("Username:"))); !ok {
			return "501 5.5.2 cancelled"
		}
		if pass, ok = ask(base64.StdEncoding.EncodeToString([]byte("Password:"))); !ok {
			return "501 5.5.2 cancelled"
		}
	default:
		return "504 5.5.4 unknown mechanism"
	}
	if want, ok := s.opts.Auth[user]; !ok || want != pass {
		return "535 5.7.8 bad credentials"
	}
	s.mu.Lock()
	ss.rec.AuthUser = user
	s.mu.Unlock()
	return "235 2.7.0 ok"
}

// data reads the message after DATA and answers it; false when the
// connection is to be closed.
func (ss *sinkSession) data() bool {
	if ss.send("354 end with <CRLF>.<CRLF>") != nil {
		return false
	}
	var buf bytes.Buffer
	for {
		if err := ss.w.Flush(); err != nil {
			return false
		}
		ss.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		l, err := ss.r.ReadString('\n')
		if err != nil {
			return false
		}
		if l == ".\r\n" || l == ".\n" {
			break
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		buf.WriteString(l)
		if buf.Len() > 64<<20 {
			return false
		}
	}
	ss.txn.Data = buf.Bytes()
	s := ss.s
	s.mu.Lock()
	hold := s.hold
	if hold != nil {
		s.held++
	}
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-s.done:
		}
		s.mu.Lock()
		s.held--
		drop := s.dropAll
		s.mu.Unlock()
		if drop {
			return false // recorded unanswered by serve's defer
		}
	}
	answer := s.reply("DATA", "", "250 2.0.0 queued as "+strconv.Itoa(ss.rec.ID))
	if ss.send(answer) != nil || ss.w.Flush() != nil {
		return false
	}
	ss.txn.Reply = answer
	ss.txn.Acked = strings.HasPrefix(answer, "2")
	ss.endTxn()
	return true
}

// pathArg splits "FROM:<a@b> BODY=8BITMIME" into the address and the
// parameters.
func pathArg(arg, prefix string) (addr, params string) {
	if len(arg) >= len(prefix) && strings.EqualFold(arg[:len(prefix)], prefix) {
		arg = arg[len(prefix):]
	}
	arg = strings.TrimSpace(arg)
	path, params, _ := strings.Cut(arg, " ")
	return strings.TrimSuffix(strings.TrimPrefix(path, "<"), ">"), strings.TrimSpace(params)
}

// ---- Postfix's smtp-sink ----

// postfixSink is Postfix's smtp-sink on ip:port, each message it accepts
// dumped into a file of dir.
type postfixSink struct {
	addr string
	dir  string
}

// startPostfixSink runs smtp-sink with opts (its -r, -f, -b, -B... script
// 4xx and 5xx answers) until the test ends.
func startPostfixSink(t *testing.T, ip string, port int, opts ...string) *postfixSink {
	t.Helper()
	path := needTool(t, "smtp-sink")
	// As root smtp-sink must drop to a user (-u); that user writes the dumps.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	args := []string{"-d", dir + "/%H%M%S."}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	args = append(append(args, opts...), addr, "64")
	cmd := exec.Command(path, args...)
	var stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	waitFor(t, "smtp-sink to listen on "+addr, func() error {
		select {
		case <-exited:
			t.Fatalf("smtp-sink %v exited: %s", args, stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return &postfixSink{addr: addr, dir: dir}
}

// messages returns the transactions smtp-sink dumped (each file holds its
// envelope and message), sorted by file name.
func (p *postfixSink) messages(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil {
			out = append(out, string(b))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- python readers ----

// debianPython is Debian's /usr/bin/python3 with the modules mods (the
// independent implementations: dkim, nacl...), under needTool's rule.
func debianPython(t *testing.T, mods ...string) string {
	t.Helper()
	const python = "/usr/bin/python3"
	err := exec.Command(python, "-c", "import "+strings.Join(mods, ", ")).Run()
	if err == nil {
		return python
	}
	testenv.Unavailable(t, "no %s with the modules %v (make deps installs them): %v", python, mods, err)
	return ""
}

// dkimResult is one DKIM-Signature as dkimpy verified it.
type dkimResult struct {
	Idx int    `json:"idx"`
	A   string `json:"a"`
	S   string `json:"s"`
	OK  bool   `json:"ok"`
	Err string `json:"err"`
}

// dkimVerify verifies every DKIM-Signature of msg with Debian's
// python3-dkim (runtime/dkimsign/testdata/dkimverify.py), the keys looked
// up in records (name → TXT value, as fakeDNS.txts serves them).
func dkimVerify(t *testing.T, msg []byte, records map[string]string) []dkimResult {
	t.Helper()
	python := debianPython(t, "dkim", "nacl")
	recFile := filepath.Join(t.TempDir(), "records.json")
	data, _ := json.Marshal(records)
	if err := os.WriteFile(recFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("..", "runtime", "dkimsign", "testdata", "dkimverify.py"), recFile)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimverify.py: %v\n%s", err, stderr.String())
	}
	var res []dkimResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r dkimResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("dkimverify.py said %q: %v", sc.Text(), err)
		}
		res = append(res, r)
	}
	return res
}

// publishTXT adds to z the TXT records of text, one per line in zone file
// syntax (as `mfapply dkim show` prints them; other lines are ignored),
// and returns how many.
func publishTXT(t *testing.T, z *fakeDNS, text string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, ";") || strings.HasPrefix(l, "#") {
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil || rr.Header().Rrtype != dns.TypeTXT {
			continue
		}
		z.AddRR(rr)
		n++
	}
	return n
}

// ---- clients ----

// submit sends a message through the box's submission port (STARTTLS,
// the box's certificate not checked: it is self-signed; AUTH PLAIN) with
// Go's net/smtp, and fails the test unless every recipient is accepted.
func submit(t *testing.T, address, user, password, from string, to []string, msg string) {
	t.Helper()
	if err := submitErr(address, user, password, from, to, msg); err != nil {
		t.Fatalf("submission of %v as %s through %s: %v", to, user, address, err)
	}
}

func submitErr(address, user, password, from string, to []string, msg string) error {
	conn, err := net.DialTimeout("tcp", address, 10*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	host, _, _ := net.SplitHostPort(address)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("laptop.test"); err != nil {
		return err
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if err := c.Auth(smtp.PlainAuth("", user, password, host)); err != nil {
		return fmt.Errorf("AUTH PLAIN %s: %w", user, err)
	}
	if err := transaction(c, from, to, msg); err != nil {
		return err
	}
	return c.Quit()
}

// ---- the box and its outside world ----

// outside is the outside world of one test's box: its DNS, its network
// of remote servers and the CA of their certificates, whose PEM is in
// caFile.
type outside struct {
	dns    *fakeDNS
	net    *remoteNet
	ca     *certtest.CA
	caFile string
}

func newOutside(t *testing.T) *outside {
	t.Helper()
	ca := certtest.New(t)
	return &outside{dns: startFakeDNS(t), net: newRemoteNet(t), ca: ca, caFile: ca.File(t)}
}

// daemonArgs are the flags that point mailfountaind at w: its DNS server
// and the port of the remote servers.
func (w *outside) daemonArgs() []string {
	return []string{"--resolver", w.dns.Addr(), "--remote-port", strconv.Itoa(w.net.port)}
}

// daemonEnv makes mailfountaind trust w's CA, and only it, as its system
// roots (SSL_CERT_FILE, read by crypto/x509 on Linux): for the
// smarthost's verified certificate.
func (w *outside) daemonEnv() []string {
	return []string{"SSL_CERT_FILE=" + w.caFile, "SSL_CERT_DIR=" + filepath.Dir(w.caFile)}
}

// daemon starts mailfountaind on the document o, in w.
func (w *outside) daemon(t *testing.T, o stateOpts, servers ...string) *mailDaemon {
	t.Helper()
	return startMailWith(t, o, w.daemonArgs(), w.daemonEnv(), servers...)
}

// mx publishes domain's MX records, one per host in order of preference
// (10, 20...), named mx1.domain, mx2.domain..., with their A records.
func (w *outside) mx(t *testing.T, domain string, ips ...string) {
	t.Helper()
	for i, ip := range ips {
		host := fmt.Sprintf("mx%d.%s.", i+1, domain)
		w.dns.Add(fmt.Sprintf("%s. 60 IN MX %d %s", domain, 10*(i+1), host), fmt.Sprintf("%s 60 IN A %s", host, ip))
	}
}

// bounces returns the delivery reports (multipart/report) in an
// account's inbox.
func (m *mailDaemon) bounces(t *testing.T, id string) []stored {
	t.Helper()
	var out []stored
	for _, s := range m.inbox(t, id) {
		if strings.HasPrefix(strings.ToLower(s.header("Content-Type")), "multipart/report") {
			out = append(out, s)
		}
	}
	return out
}

// waitBounces waits until an account's inbox holds n delivery reports.
func (m *mailDaemon) waitBounces(t *testing.T, id string, n int, d time.Duration) []stored {
	t.Helper()
	var got []stored
	waitUntil(t, fmt.Sprintf("%d delivery reports in %s's inbox", n, id), d, func() error {
		got = m.bounces(t, id)
		if len(got) < n {
			return fmt.Errorf("%d there", len(got))
		}
		return nil
	})
	return got
}

// queueCmd runs `mfapply --data DATA queue args...`.
func (m *mailDaemon) queueCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return mfapply(t, "", append([]string{"--data", m.data, "queue"}, args...)...)
}

// queueList is `mfapply queue list --json`: a JSON array of queue.Info
// (one object per line is read too).
func (m *mailDaemon) queueList(t *testing.T) []queue.Info {
	t.Helper()
	code, out, errOut := m.queueCmd(t, "list", "--json")
	if code != 0 {
		t.Fatalf("mfapply queue list --json: exit %d\n%s%s", code, out, errOut)
	}
	var infos []queue.Info
	if err := json.Unmarshal([]byte(out), &infos); err == nil {
		return infos
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var i queue.Info
		if err := dec.Decode(&i); err == io.EOF {
			return infos
		} else if err != nil {
			t.Fatalf("mfapply queue list --json printed neither an array nor objects of queue.Info: %v\n%s", err, out)
		}
		infos = append(infos, i)
	}
}

// queueShow is `mfapply queue show ID --json`.
func (m *mailDaemon) queueShow(t *testing.T, id string) queue.Info {
	t.Helper()
	code, out, errOut := m.queueCmd(t, "show", id, "--json")
	if code != 0 {
		t.Fatalf("mfapply queue show %s --json: exit %d\n%s%s", id, code, out, errOut)
	}
	var i queue.Info
	if err := json.Unmarshal([]byte(out), &i); err != nil {
		t.Fatalf("mfapply queue show %s --json: %v\n%s", id, err, out)
	}
	return i
}
