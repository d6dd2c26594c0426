package tests

// Tests of the outside world of outbound_helpers_test.go, with
// independent clients: dig, python's smtplib, swaks, Go's net/smtp.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/dsn/dsntest"
)

// TestHarnessDNS: the DNS server answers MX, A, AAAA and TXT (dig, or
// Go's resolver without it), tells NXDOMAIN from NODATA, and records
// changed while it runs are served at once.
func TestHarnessDNS(t *testing.T) {
	t.Parallel()
	z := startFakeDNS(t,
		"client.example. MX 20 mx2.client.example.",
		"client.example. MX 10 mx1.client.example.",
		"mx1.client.example. A 127.0.0.11",
		"mx2.client.example. A 127.0.0.12",
		"mx2.client.example. AAAA ::1",
		`sel._domainkey.client.example. TXT "v=DKIM1; k=ed25519; " "p=abc"`,
		"nullmx.example. MX 0 .",
	)
	tests := []struct {
		name, typ string
		want      []string
	}{
		{"client.example", "MX", []string{"10 mx1.client.example.", "20 mx2.client.example."}},
		{"mx1.client.example", "A", []string{"127.0.0.11"}},
		{"MX2.Client.Example", "AAAA", []string{"::1"}},
		{"mx1.client.example", "AAAA", nil},
		{"nullmx.example", "MX", []string{"0 ."}},
		{"nosuch.example", "A", nil},
	}
	for _, tt := range tests {
		got := z.lookup(t, tt.name, tt.typ)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: %q, want %q", tt.name, tt.typ, got, tt.want)
		}
	}
	// dig prints a TXT record's strings apart, Go's resolver joined.
	if got := strings.Join(z.lookup(t, "sel._domainkey.client.example", "TXT"), ""); !strings.Contains(strings.ReplaceAll(got, `" "`, ""), "v=DKIM1; k=ed25519; p=abc") {
		t.Errorf("TXT: %q", got)
	}
	if got := z.txts()["sel._domainkey.client.example"]; got != "v=DKIM1; k=ed25519; p=abc" {
		t.Errorf("txts: %q", got)
	}

	// NXDOMAIN and NODATA, as a resolver of the daemon tells them apart.
	c := &dns.Client{Timeout: 5 * time.Second}
	for _, tt := range []struct {
		name  string
		typ   uint16
		rcode int
		n     int
	}{
		{"nosuch.example.", dns.TypeMX, dns.RcodeNameError, 0},
		{"mx1.client.example.", dns.TypeMX, dns.RcodeSuccess, 0},
		{"_domainkey.client.example.", dns.TypeTXT, dns.RcodeSuccess, 0}, // an empty non-terminal
		{"client.example.", dns.TypeMX, dns.RcodeSuccess, 2},
	} {
		m := new(dns.Msg)
		m.SetQuestion(tt.name, tt.typ)
		for _, proto := range []string{"udp", "tcp"} {
			c.Net = proto
			r, _, err := c.Exchange(m, z.Addr())
			if err != nil {
				t.Fatalf("%s %s over %s: %v", tt.name, dns.TypeToString[tt.typ], proto, err)
			}
			if r.Rcode != tt.rcode || len(r.Answer) != tt.n || !r.Authoritative {
				t.Errorf("%s %s over %s: rcode %s, %d answers, aa=%v; want %s, %d, aa", tt.name, dns.TypeToString[tt.typ], proto,
					dns.RcodeToString[r.Rcode], len(r.Answer), r.Authoritative, dns.RcodeToString[tt.rcode], tt.n)
			}
		}
	}

	// Changed while running.
	z.Set("client.example", dns.TypeMX, "client.example. MX 5 mx2.client.example.")
	z.Add("new.example. A 127.0.0.13")
	if got := z.lookup(t, "client.example", "MX"); !slices.Equal(got, []string{"5 mx2.client.example."}) {
		t.Errorf("MX after set: %q", got)
	}
	if got := z.lookup(t, "new.example", "A"); !slices.Equal(got, []string{"127.0.0.13"}) {
		t.Errorf("A added while running: %q", got)
	}
	if n := z.QueriesFor("client.example", dns.TypeMX); n < 2 {
		t.Errorf("client.example MX queried %d times, want at least 2", n)
	}
}

// sinkPy drives python's smtplib against a sink: the operations of
// script, each printed as a JSON line [code, text] (or ["error", text]).
const sinkPy = `
import json, smtplib, ssl, sys
a = json.loads(sys.argv[1])
s = smtplib.SMTP(a['host'], a['port'], timeout=20)
def out(v): print(json.dumps(v), flush=True)
def do(f, *args):
    try:
        r = f(*args)
        out([r[0], r[1].decode() if isinstance(r[1], bytes) else str(r[1])] if isinstance(r, tuple) else ['ok', str(r)])
    except smtplib.SMTPResponseException as e:
        out([e.smtp_code, e.smtp_error.decode()])
    except smtplib.SMTPException as e:
        out(['error', str(e)])
s.ehlo('py.test')
out([0, ' '.join(sorted(s.esmtp_features))])
if a.get('tls'):
    s.starttls(context=ssl.create_default_context(cafile=a['cafile']))
    s.ehlo('py.test')
if a.get('user'):
    do(s.login, a['user'], a['password'])
for m in a['msgs']:
    do(s.mail, m['from'])
    for r in m['to']:
        do(s.rcpt, r)
    do(s.data, m['data'])
    do(s.rset)
s.quit()
`

type pyMsg struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Data string   `json:"data"`
}

// runSinkPy runs sinkPy and returns its lines: the EHLO keywords first,
// then one [code, text] per operation.
func runSinkPy(t *testing.T, addr string, tlsCA, user, password string, msgs []pyMsg) [][2]any {
	t.Helper()
	python := needTool(t, "python3")
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	args, _ := json.Marshal(map[string]any{"host": host, "port": p, "tls": tlsCA != "", "cafile": tlsCA,
		"user": user, "password": password, "msgs": msgs})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", sinkPy, string(args))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python smtplib: %v\n%s%s", err, out, stderr.String())
	}
	var res [][2]any
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r [2]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("python printed %q: %v", l, err)
		}
		res = append(res, r)
	}
	return res
}

func codeOf(r [2]any) int {
	f, _ := r[0].(float64)
	return int(f)
}

// TestHarnessSink: the Go sink with python's smtplib (STARTTLS verified
// against the test CA, AUTH, answers scripted per recipient and attempt)
// and Go's net/smtp (two messages over one connection, an answer held).
func TestHarnessSink(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	ip := w.net.ip()
	s := startSink(t, ip, w.net.port, sinkOpts{Hostname: "smtp.isp.test", TLS: serverTLS(t, w.ca, "smtp.isp.test", ip),
		Auth: map[string]string{"box": "s3cret"}})
	s.answer("RCPT", "later@client.example", "451 4.3.0 try later", "451 4.3.0 try later", "250 2.1.5 now ok")
	s.answer("RCPT", "nosuch@client.example", "550-5.1.1 no such user\n550 5.1.1 really")
	s.answer("RCPT", "blocked@client.example", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org")

	msg := message("rene@ma-societe.fr", "later@client.example", "sink-1", "hello\n.dot\n")
	var msgs []pyMsg
	for range 3 {
		msgs = append(msgs, pyMsg{From: "rene@ma-societe.fr", To: []string{"later@client.example", "nosuch@client.example", "blocked@client.example"}, Data: msg})
	}
	res := runSinkPy(t, s.addr, w.caFile, "box", "s3cret", msgs)
	if feats := res[0][1].(string); !strings.Contains(feats, "starttls") || !strings.Contains(feats, "pipelining") || strings.Contains(feats, "auth") {
		t.Errorf("EHLO before TLS: %s, want STARTTLS and PIPELINING, no AUTH", feats)
	}
	if codeOf(res[1]) != 235 {
		t.Fatalf("AUTH: %v", res[1])
	}
	// Per message: MAIL, 3 RCPT, DATA, RSET.
	wantRcpt := [][3]int{{451, 550, 554}, {451, 550, 554}, {250, 550, 554}}
	wantData := []int{554, 554, 250}
	for i := range 3 {
		ops := res[2+6*i : 2+6*(i+1)]
		for j := range 3 {
			if got := codeOf(ops[1+j]); got != wantRcpt[i][j] {
				t.Errorf("message %d, RCPT %d: %v, want %d", i, j, ops[1+j], wantRcpt[i][j])
			}
		}
		if got := codeOf(ops[4]); got != wantData[i] {
			t.Errorf("message %d, DATA: %v, want %d", i, ops[4], wantData[i])
		}
	}
	if txt := res[2+2][1].(string); !strings.Contains(txt, "no such user\n5.1.1 really") {
		t.Errorf("multi-line answer as smtplib read it: %q", txt)
	}
	got := s.accepted()
	if len(got) != 1 {
		t.Fatalf("%d messages accepted, want 1:%s", len(got), s.describe())
	}
	x := got[0]
	if !x.TLS || x.AuthUser != "box" || x.From != "rene@ma-societe.fr" || !slices.Equal(x.Rcpts, []string{"later@client.example"}) ||
		len(x.Refused) != 2 || string(x.Data) != msg {
		t.Errorf("record: %+v\nwant TLS, AUTH box, the message as sent:\n%q", x, msg)
	}
	if n := s.rcptAttempts("later@client.example"); n != 3 {
		t.Errorf("%d RCPT attempts for later@, want 3", n)
	}

	// Without TLS the sink asks for it before AUTH: no AUTH offered, MAIL refused.
	if err := sendPlain(s.addr, "a@b.example", []string{"x@client.example"}, msg); err == nil || !strings.Contains(err.Error(), "530") {
		t.Errorf("MAIL without AUTH: %v, want 530", err)
	}

	// A plain sink: two messages over one connection, the second held
	// at the end of DATA until released.
	p := startSink(t, w.net.ip(), w.net.port, sinkOpts{})
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := newSMTPClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "a@b.example", "x@client.example", msg); err != nil {
		t.Fatal(err)
	}
	release := p.holdData()
	done := make(chan error, 1)
	go func() { done <- sendOn(c, "a@b.example", "y@client.example", msg) }()
	waitFor(t, "the second message held at the end of DATA", func() error {
		if p.heldNow() != 1 {
			return errUnheld
		}
		return nil
	})
	if n := len(p.accepted()); n != 1 {
		t.Errorf("%d accepted while the second is held, want 1", n)
	}
	release(true)
	if err := <-done; err != nil {
		t.Fatalf("second message after release: %v", err)
	}
	acc := p.waitAccepted(t, 2, 10*time.Second)
	if acc[0].Conn != acc[1].Conn || len(p.connections()) != 1 {
		t.Errorf("two messages over one connection: conns %d and %d, %d connections", acc[0].Conn, acc[1].Conn, len(p.connections()))
	}
	if acc[0].TLS || acc[0].Pipelined {
		t.Errorf("recorded TLS or PIPELINING on a plain net/smtp connection: %+v", acc[0])
	}

	// A held answer dropped: recorded, not accepted; the client sees the
	// connection closed.
	release = p.holdData()
	go func() { done <- sendPlain(p.addr, "a@b.example", []string{"z@client.example"}, msg) }()
	waitFor(t, "a message held", func() error {
		if p.heldNow() != 1 {
			return errUnheld
		}
		return nil
	})
	release(false)
	if err := <-done; err == nil {
		t.Error("a dropped message was acknowledged to the client")
	}
	waitFor(t, "the dropped transaction recorded", func() error {
		for _, x := range p.transactions() {
			if slices.Contains(x.Rcpts, "z@client.example") && x.Data != nil && !x.Acked && x.Reply == "" {
				return nil
			}
		}
		return errUnheld
	})
	if n := len(p.accepted()); n != 2 {
		t.Errorf("%d accepted after the drop, want still 2", n)
	}
}

var errUnheld = errors.New("not yet")

func newSMTPClient(conn net.Conn) (*smtp.Client, error) {
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return c, c.Hello("client.test")
}

// sendOn sends one message over an open connection, and resets it for
// the next.
func sendOn(c *smtp.Client, from, to, msg string) error {
	if err := transaction(c, from, []string{to}, msg); err != nil {
		return err
	}
	return c.Reset()
}

// TestHarnessSwaksToSinks: swaks against the Go sink (opportunistic
// STARTTLS, no trust needed) and against Postfix's smtp-sink, plain and
// scripted to refuse (-r soft, -f hard).
func TestHarnessSwaksToSinks(t *testing.T) {
	t.Parallel()
	swaks := needTool(t, "swaks")
	w := newOutside(t)
	ip := w.net.ip()
	g := startSink(t, ip, w.net.port, sinkOpts{TLS: serverTLS(t, w.ca, "mx.sink.test")})
	run := func(addr string, extra ...string) (int, string) {
		t.Helper()
		host, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append([]string{"--server", host, "--port", port, "--from", "rene@ma-societe.fr", "--to", "bob@client.example",
			"--header", "Subject: swaks-harness", "--body", "harness body"}, extra...)
		out, err := exec.CommandContext(ctx, swaks, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := run(g.addr, "-tls"); code != 0 {
		t.Fatalf("swaks -tls to the Go sink: exit %d\n%s", code, out)
	}
	if acc := g.accepted(); len(acc) != 1 || !acc[0].TLS || !strings.Contains(string(acc[0].Data), "harness body") {
		t.Errorf("Go sink after swaks -tls:%s", g.describe())
	}

	ok := startPostfixSink(t, w.net.ip(), w.net.port)
	if code, out := run(ok.addr); code != 0 {
		t.Fatalf("swaks to smtp-sink: exit %d\n%s", code, out)
	}
	waitFor(t, "smtp-sink's dump", func() error {
		ms := ok.messages(t)
		if len(ms) != 1 || !strings.Contains(ms[0], "harness body") || !strings.Contains(ms[0], "bob@client.example") {
			return fmt.Errorf("dumps: %q", ms)
		}
		return nil
	})
	soft := startPostfixSink(t, w.net.ip(), w.net.port, "-r", "RCPT", "-b", "451 4.7.1 greylisted, try again")
	if code, out := run(soft.addr); code == 0 || !strings.Contains(out, "451 4.7.1 greylisted") {
		t.Errorf("swaks to smtp-sink -r RCPT: exit %d, want a failure with the scripted 451:\n%s", code, out)
	}
	hard := startPostfixSink(t, w.net.ip(), w.net.port, "-f", "RCPT", "-B", "550 5.1.1 no such user here")
	if code, out := run(hard.addr); code == 0 || !strings.Contains(out, "550 5.1.1 no such user here") {
		t.Errorf("swaks to smtp-sink -f RCPT: exit %d, want a failure with the scripted 550:\n%s", code, out)
	}
	if n := len(soft.messages(t)) + len(hard.messages(t)); n != 0 {
		t.Errorf("%d messages dumped by the refusing smtp-sinks", n)
	}
}

// TestHarnessDKIM: a message signed with runtime/dkimsign's keys, their
// records published on the DNS server in the zone file syntax `mfapply
// dkim show` prints, verifies with python3-dkim; altered, it does not.
func TestHarnessDKIM(t *testing.T) {
	t.Parallel()
	debianPython(t, "dkim", "nacl")
	z := startFakeDNS(t)
	keys, err := dkimsign.Ensure(t.TempDir(), "ma-societe.fr", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := keys.Records()
	if err != nil {
		t.Fatal(err)
	}
	var zone strings.Builder
	zone.WriteString("; the records to publish\n")
	for _, r := range recs {
		zone.WriteString(r.String() + "\n")
	}
	if n := publishTXT(t, z, zone.String()); n != 2 {
		t.Fatalf("%d TXT records published from:\n%s", n, zone.String())
	}
	for _, r := range recs {
		if got := strings.Join(z.lookup(t, r.Name, "TXT"), ""); !strings.Contains(strings.ReplaceAll(got, `" "`, ""), r.Value()[:40]) {
			t.Errorf("%s TXT: %q", r.Name, got)
		}
	}
	msg := message("rene.ricard@ma-societe.fr", "bob@client.example", "dkim-harness", "Bonjour\n")
	sigs, err := dkimsign.Signatures(strings.NewReader(msg), keys)
	if err != nil {
		t.Fatal(err)
	}
	signed := []byte(sigs + msg)
	res := dkimVerify(t, signed, z.txts())
	if len(res) != 2 || !res[0].OK || !res[1].OK || res[0].A != "ed25519-sha256" || res[1].A != "rsa-sha256" {
		t.Errorf("dkimpy on the signed message: %+v, want ed25519-sha256 and rsa-sha256, both verified", res)
	}
	altered := bytes.Replace(signed, []byte("Bonjour"), []byte("Bonsoir"), 1)
	for _, r := range dkimVerify(t, altered, z.txts()) {
		if r.OK {
			t.Errorf("dkimpy verified an altered body: %+v", r)
		}
	}
}

// TestHarnessDSN: python's email package reads a report of runtime/dsn.
func TestHarnessDSN(t *testing.T) {
	t.Parallel()
	orig := message("rene.ricard@ma-societe.fr", "nosuch@client.example", "dsn-harness", "Bonjour\n")
	r := &dsn.Report{ReportingMTA: "mail.ma-societe.fr", Domain: "ma-societe.fr", Language: "fr", Sender: "rene.ricard@ma-societe.fr",
		Arrival: time.Now(), Original: []byte(orig), Return: dsn.ReturnFull,
		Recipients: []dsn.Recipient{{Addr: "nosuch@client.example", Action: dsn.Failed, RemoteMTA: "mx1.client.example",
			Diagnostic: "550-5.1.1 no such user\r\n550 5.1.1 really"}}}
	m, err := r.Build()
	if err != nil {
		t.Fatal(err)
	}
	rep := dsntest.Read(t, m.Data)
	if rep.ContentType != "multipart/report" || rep.ReportType != "delivery-status" || len(rep.Recipients) != 1 ||
		rep.Recipients[0]["Action"] != "failed" || !strings.HasPrefix(rep.Recipients[0]["Status"], "5.1.1") ||
		!strings.Contains(rep.Recipients[0]["Diagnostic-Code"], "really") || rep.OrigSubject != "dsn-harness" {
		t.Errorf("python read: %+v", rep)
	}
	if !strings.Contains(rep.Text, "Objet de votre message") {
		t.Errorf("a report in French without its French text: %q", rep.Text)
	}
}

// TestHarnessDocument: the document's outbound fields, as the tests of
// mail out write them.
func TestHarnessDocument(t *testing.T) {
	t.Parallel()
	plain := stateYAML(t, stateOpts{})
	if strings.Contains(plain, "relay:") || strings.Contains(plain, "queue:") || !strings.Contains(plain, "mode: direct") {
		t.Errorf("the default document has outbound fields:\n%s", plain)
	}
	doc := stateYAML(t, stateOpts{Mode: "relay", Relay: &relayOpts{Host: "smtp.isp.example", Port: 2525, Username: "box", Password: "s3cret"},
		Queue:        &queueOpts{MinBackoff: "1s", MaxBackoff: "2s", Lifetime: "1m", DelayWarning: "0"},
		Redirections: []redirection{{Address: "partenaire", To: []string{"contact@client.example"}}},
		Domains:      []extraDomain{{Name: "office.example", Language: "en", Accounts: []extraAccount{{ID: "jane", PasswordHash: lowCostHash}}}}})
	for _, want := range []string{"  mode: relay\n", "  relay:\n    host: smtp.isp.example\n    port: 2525\n    username: \"box\"\n    password: \"s3cret\"\n",
		"  queue:\n    min_backoff: \"1s\"\n    max_backoff: \"2s\"\n    lifetime: \"1m\"\n    delay_warning: \"0\"\n",
		"      - address: partenaire\n        to:\n          - \"contact@client.example\"\n",
		"  - name: office.example\n    language: en\n    accounts:\n      - id: jane\n"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
	// What the schema knows today validates: the relay and a redirection outside.
	f := t.TempDir() + "/state.yaml"
	writeFile(t, f, stateYAML(t, stateOpts{Mode: "relay", Relay: &relayOpts{Host: "smtp.isp.example", Port: 2525, Username: "box", Password: "s3cret"},
		Redirections: []redirection{{Address: "partenaire", To: []string{"contact@client.example"}}},
		Domains:      []extraDomain{{Name: "office.example", Language: "en", Accounts: []extraAccount{{ID: "jane", PasswordHash: lowCostHash}}}}}))
	if code, out, errOut := mfapply(t, "", "validate", "-f", f); code != 0 {
		t.Errorf("mfapply validate: exit %d\n%s%s", code, out, errOut)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHarnessPipelining: the sink records whether the envelope came
// pipelined: commands written at once are, net/smtp's one by one are not.
func TestHarnessPipelining(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading %s: %v", code, err)
			}
			if !strings.HasPrefix(l, code) {
				t.Fatalf("got %q, want %s", l, code)
			}
			if l[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	fmt.Fprint(conn, "EHLO pipe.test\r\n")
	expect("250")
	fmt.Fprint(conn, "MAIL FROM:<a@b.example> BODY=8BITMIME\r\nRCPT TO:<c@client.example>\r\nRCPT TO:<d@client.example>\r\nDATA\r\n")
	for _, c := range []string{"250", "250", "250", "354"} {
		expect(c)
	}
	fmt.Fprint(conn, "Subject: pipe\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
	expect("250")
	expect("221")
	if err := sendPlain(s.addr, "a@b.example", []string{"e@client.example"}, "Subject: plain\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	got := s.waitAccepted(t, 2, 10*time.Second)
	if x := got[0]; !x.Pipelined || x.Params != "BODY=8BITMIME" || len(x.Rcpts) != 2 || string(x.Data) != "Subject: pipe\r\n\r\n.dot\r\n" {
		t.Errorf("pipelined transaction recorded as %+v", x)
	}
	if got[1].Pipelined {
		t.Errorf("net/smtp's transaction recorded as pipelined")
	}
}

// TestHarnessTrustCA: a Go program run with outside.daemonEnv trusts the
// test CA as its system roots (SSL_CERT_FILE), as the daemon will for
// the smarthost and MTA-STS; without it, it does not. The program is
// this test binary, run again as TestHarnessTLSProbe.
func TestHarnessTrustCA(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(t, w.ca, "smtp.isp.example"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	probe := func(env []string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHarnessTLSProbe$", "-test.count=1")
		cmd.Env = append(append(os.Environ(), "MF_TLS_PROBE="+ln.Addr().String()), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	}
	if err := probe(w.daemonEnv()); err != nil {
		t.Errorf("with SSL_CERT_FILE: the test CA is not trusted: %v", err)
	}
	if err := probe([]string{"SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=/nonexistent"}); err == nil {
		t.Errorf("without the test CA the probe still trusts the server: the check proves nothing")
	}
}

// TestHarnessTLSProbe is TestHarnessTrustCA's client: when run with
// MF_TLS_PROBE=addr it verifies addr's certificate as smtp.isp.example
// against the system roots.
func TestHarnessTLSProbe(t *testing.T) {
	addr := os.Getenv("MF_TLS_PROBE")
	if addr == "" {
		t.Skip("run by TestHarnessTrustCA")
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "smtp.isp.example"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHarnessMTASTSServer: the MTA-STS policy server, found through the
// DNS server and fetched by curl over HTTPS checked against the test CA.
func TestHarnessMTASTSServer(t *testing.T) {
	t.Parallel()
	curl := needTool(t, "curl")
	w := newOutside(t)
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx2.sts.example\r\nmax_age: 86400\r\n"
	mtaSTSServer(t, w, "sts.example", policy)
	ips := w.dns.lookup(t, "mta-sts.sts.example", "A")
	if len(ips) != 1 {
		t.Fatalf("mta-sts.sts.example A: %v", ips)
	}
	if txt := strings.Join(w.dns.lookup(t, "_mta-sts.sts.example", "TXT"), ""); !strings.Contains(txt, "v=STSv1; id=") {
		t.Errorf("_mta-sts TXT: %q", txt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--fail", "--cacert", w.caFile,
		"--resolve", "mta-sts.sts.example:443:"+ips[0], "https://mta-sts.sts.example/.well-known/mta-sts.txt").CombinedOutput()
	if err != nil || string(out) != policy {
		t.Errorf("curl the policy: %v: %q", err, out)
	}
}
