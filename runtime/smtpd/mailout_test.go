package smtpd

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/srs"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

// flakyDeliverer is the real Deliverer whose next calls fail, for a disk
// that is full for a moment.
type flakyDeliverer struct {
	Deliverer
	mu   sync.Mutex
	fail int
}

func (d *flakyDeliverer) DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (bool, error) {
	d.mu.Lock()
	fail := d.fail > 0
	if fail {
		d.fail--
	}
	d.mu.Unlock()
	if fail {
		io.Copy(io.Discard, msg)
		return false, errors.New("mailbox disk full")
	}
	return d.Deliverer.DeliverOnce(ctx, roots, key, msg)
}

// TestMixedRecipients: a message to mailboxes and to outside addresses is
// one transaction. When the queue or the mailboxes fail, the client gets
// 451 and its retry (the same message: the same key) leaves one copy in
// each mailbox and one in the queue.
func TestMixedRecipients(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name         string
		mx           bool // on the MX, from outside; else alice submits
		from         string
		rcpts        []string
		queueFails   int
		mailboxFails int
		// after the failed attempt, what the queue and bob hold
		queuedAfterFailure, bobAfterFailure int
		wantRcpts, wantForward              []string
	}{
		{"submission, queue fails", false, "alice@example.test", []string{"bob@example.test", "Someone@Remote.test"},
			1, 0, 0, 0, []string{"Someone@Remote.test"}, nil},
		{"submission, mailboxes fail", false, "alice@example.test", []string{"bob@example.test", "Someone@Remote.test"},
			0, 1, 1, 0, []string{"Someone@Remote.test"}, nil},
		{"submission, both fail", false, "alice@example.test", []string{"Someone@Remote.test", "bob@example.test"},
			1, 1, 0, 0, []string{"Someone@Remote.test"}, nil},
		// A redirection to bob and outside, and the same outside address
		// named: sent once, as named.
		{"submission, named and forwarded", false, "alice@example.test", []string{"bobfwd@example.test", "other@remote.test", "someone@remote.test"},
			1, 0, 0, 0, []string{"other@remote.test", "someone@remote.test"}, nil},
		{"mx redirection, queue fails", true, "x@elsewhere.test", []string{"bobfwd@example.test"},
			1, 0, 0, 0, nil, []string{"someone@remote.test"}},
		{"mx redirection, mailboxes fail", true, "", []string{"bobfwd@example.test", "bob@example.test"},
			0, 1, 1, 0, nil, []string{"someone@remote.test"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q := &recordingQueue{}
			d := &flakyDeliverer{}
			e := newEnv(t, func(cfg *Config) {
				set := cfg.Settings.Load()
				set.LegacyPlainAuth = true // AUTH in clear for the raw client
				cfg.Settings.Store(set)
				cfg.Queue = q
				d.Deliverer = cfg.Deliverer
				cfg.Deliverer = d
			})
			addRedirection(t, e, "bobfwd", "bob@example.test", "someone@remote.test")
			data := messageFrom("alice@example.test", "mixed")
			dial := func() *rawClient {
				addr := e.sub
				if c.mx {
					addr = e.mx
				}
				rc := dialRaw(t, addr)
				rc.reply()
				rc.expect("EHLO client.test", "250 ")
				if !c.mx {
					rc.expect("AUTH PLAIN "+b64("\x00alice@example.test\x00"+alicePassword), "235 ")
				}
				rc.expect("MAIL FROM:<"+c.from+">", "250 ")
				for _, r := range c.rcpts {
					rc.expect("RCPT TO:<"+r+">", "250 ")
				}
				return rc
			}

			q.failNext(c.queueFails)
			d.mu.Lock()
			d.fail = c.mailboxFails
			d.mu.Unlock()
			if got := dial().data(data); !strings.HasPrefix(got, "451 4.3.0") {
				t.Fatalf("first attempt: %q, want 451 4.3.0", got)
			}
			if n := len(q.queued()); n != c.queuedAfterFailure {
				t.Fatalf("after the failure the queue holds %d messages, want %d", n, c.queuedAfterFailure)
			}
			e.wantMailbox("example.test", "bob", c.bobAfterFailure)
			if !strings.Contains(e.logs.String(), `level=ERROR msg="smtp delivery failed"`) {
				t.Errorf("failure not logged:\n%s", e.logs)
			}

			// The client tries again, as long as it gets 451.
			for i := 0; ; i++ {
				got := dial().data(data)
				if strings.HasPrefix(got, "250 2.0.0") {
					break
				}
				if i > 2 || !strings.HasPrefix(got, "451 4.3.0") {
					t.Fatalf("retry %d: %q", i, got)
				}
			}
			e.wantMailbox("example.test", "bob", 1)
			msgs := q.queued()
			if len(msgs) != 1 {
				t.Fatalf("the queue holds %d messages, want 1: %+v", len(msgs), msgs)
			}
			m := msgs[0]
			if m.env.From != c.from || !slices.Equal(m.env.Rcpts, c.wantRcpts) || !slices.Equal(m.env.Forward, c.wantForward) {
				t.Errorf("queued envelope %+v, want from %q rcpts %q forward %q", m.env, c.from, c.wantRcpts, c.wantForward)
			}
			if want := specKey(c.from, c.rcpts, data); m.env.Key != want {
				t.Errorf("queued with key %q, want the delivery key %q", m.env.Key, want)
			}
			if !strings.HasPrefix(m.msg, "Received: from client.test ") || !strings.HasSuffix(m.msg, "\r\n"+data) {
				t.Errorf("queued message:\n%s", m.msg)
			}
		})
	}
}

// addRedirection adds a redirection of example.test.
func addRedirection(t *testing.T, e *env, name string, targets ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: name, Targets: targets})
	}); err != nil {
		t.Fatal(err)
	}
}

// newSRS returns a Rewriter of example.test with the test's secret, its
// clock at now.
func newSRS(t *testing.T, now time.Time, secret string) *srs.Rewriter {
	t.Helper()
	r, err := srs.New(srs.Config{Secrets: [][]byte{[]byte(secret)}, Domain: "example.test", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func forwardSRS(t *testing.T, r *srs.Rewriter, sender string) string {
	t.Helper()
	a, err := r.Forward(sender)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSRSBounce: bounces to the box's SRS addresses come in on the MX
// without AUTH and go back to the original sender (queued as named, the
// null sender kept), or to its mailbox when it is of the box; forged,
// malformed, expired and foreign ones are unknown users.
func TestSRSBounce(t *testing.T) {
	t.Parallel()
	const secret = "the box's SRS secret"
	now := time.Now()
	rw := newSRS(t, now, secret)
	q := &recordingQueue{}
	e := newEnv(t, func(c *Config) {
		c.Queue = q
		c.SRS = rw
	})
	remote := forwardSRS(t, rw, "Sender.Name@Remote.test")
	local := forwardSRS(t, rw, "dave@other.test")
	first := "SRS0=abcd=JX=orig.test=user@first.test"
	srs1 := forwardSRS(t, rw, first)
	if !strings.HasPrefix(srs1, "SRS1=") {
		t.Fatalf("Forward(%s) = %s, want SRS1", first, srs1)
	}
	ghost := forwardSRS(t, rw, "ghost@other.test")
	old := forwardSRS(t, newSRS(t, now.Add(-30*24*time.Hour), secret), "late@remote.test")
	stranger := forwardSRS(t, newSRS(t, now, "another secret"), "x@remote.test")
	forged := remote[:5] + "AAAA" + remote[9:]
	if forged == remote {
		forged = remote[:5] + "BBBB" + remote[9:]
	}
	onOther := strings.TrimSuffix(remote, "@example.test") + "@other.test"

	rc := dialRaw(t, e.mx)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("MAIL FROM:<>", "250 ")
	for _, c := range []struct {
		name, rcpt, want string
	}{
		{"remote sender", remote, "250 "},
		{"sender of the box", local, "250 "},
		{"SRS1", srs1, "250 "},
		{"forged", forged, "550 5.1.1"},
		{"another secret", stranger, "550 5.1.1"},
		{"expired", old, "550 5.1.1"},
		{"malformed", "SRS0=xx@example.test", "550 5.1.1"},
		{"malformed SRS1", "srs1=abcd=host@example.test", "550 5.1.1"},
		{"not the SRS domain", onOther, "550 5.1.1"},
		{"deleted account of the box", ghost, "550 5.1.1"},
		{"unknown user", "nobody@example.test", "550 5.1.1"},
	} {
		if got := rc.cmd("RCPT TO:<" + c.rcpt + ">"); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: RCPT TO:<%s>: %q, want %s", c.name, c.rcpt, got, c.want)
		}
	}
	data := "From: MAILER-DAEMON@remote.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nbounce\r\n"
	if got := rc.data(data); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("DATA: %q", got)
	}
	// Some systems lowercase the address: it is still ours (the sender's
	// case is lost). Not a bounce, this time: the sender is kept.
	rc.expect("MAIL FROM:<someone@remote.test>", "250 ")
	rc.expect("RCPT TO:<"+strings.ToLower(remote)+">", "250 ")
	if got := rc.data(data); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("DATA: %q", got)
	}
	msgs := q.queued()
	if len(msgs) != 2 {
		t.Fatalf("queued %d messages, want 2", len(msgs))
	}
	for i, c := range []struct {
		from  string
		rcpts []string
	}{
		{"", []string{"Sender.Name@Remote.test", first}},
		{"someone@remote.test", []string{"sender.name@remote.test"}},
	} {
		if m := msgs[i]; m.env.From != c.from || !slices.Equal(m.env.Rcpts, c.rcpts) || m.env.Forward != nil ||
			!strings.HasSuffix(m.msg, data) || strings.Contains(m.msg, "Return-Path") {
			t.Errorf("queued %+v, want from <%s> to %q", m, c.from, c.rcpts)
		}
	}
	if got := e.wantMailbox("other.test", "dave", 1)[0]; !strings.HasPrefix(got, "Return-Path: <>\r\n") || !strings.HasSuffix(got, data) {
		t.Errorf("dave's mailbox:\n%s", got)
	}
	logs := e.logs.String()
	for _, w := range []string{`msg="smtp SRS address refused"`, "SRS hash does not match", "expired", `msg="smtp bounce to an SRS address"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("log lacks %s:\n%s", w, logs)
		}
	}

	// Without a Queue, a bounce to an outside sender waits (451); one to
	// a sender of the box is delivered.
	e2 := newEnv(t, func(c *Config) { c.SRS = rw })
	rc = dialRaw(t, e2.mx)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("MAIL FROM:<>", "250 ")
	rc.expect("RCPT TO:<"+remote+">", "451 4.3.0")
	rc.expect("RCPT TO:<"+local+">", "250 ")
	// Without SRS, an SRS address is an unknown user.
	e3 := newEnv(t, func(c *Config) { c.Queue = &recordingQueue{} })
	rc = dialRaw(t, e3.mx)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("MAIL FROM:<>", "250 ")
	rc.expect("RCPT TO:<"+remote+">", "550 5.1.1")
}

// TestInject: the box's own messages are routed as its submissions
// would be, through the real mailboxes and a queue; unknown recipients
// are dropped; the key makes it idempotent across a restart.
func TestInject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const secret = "the box's SRS secret"
	rw := newSRS(t, time.Now(), secret)
	dir := t.TempDir()
	q := &recordingQueue{}
	e := newEnvIn(t, dir, func(c *Config) {
		c.Queue = q
		c.SRS = rw
	})
	bounceTo := forwardSRS(t, rw, "Orig@Remote.test")
	msg := "From: MAILER-DAEMON@example.test\r\nTo: alice@example.test\r\nSubject: Undelivered\r\n\r\nbounce\n"
	stored := strings.TrimSuffix(msg, "\n") + "\r\n" // bare LF made CRLF

	rcpts := []string{"Alice@Example.test", "ghost@example.test", "fwd@example.test", "news@example.test", "Someone@Far.test", bounceTo, "dave@other.test"}
	if err := e.srv.Inject(ctx, "", rcpts, "bounce-of-q1", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	for _, box := range []struct{ domain, id string }{{"example.test", "alice"}, {"other.test", "dave"}} {
		got := e.wantMailbox(box.domain, box.id, 1)[0]
		if !localReceivedRE.MatchString(strings.TrimPrefix(got, "Return-Path: <>\r\n")) || !strings.HasSuffix(got, "\r\n"+stored) {
			t.Errorf("%s's mailbox:\n%s", box.id, got)
		}
	}
	msgs := q.queued()
	if len(msgs) != 1 {
		t.Fatalf("queued %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.env.From != "" || !slices.Equal(m.env.Rcpts, []string{"Someone@Far.test", "Orig@Remote.test"}) ||
		!slices.Equal(m.env.Forward, []string{"someone@remote.test"}) || m.env.Key != injectKey("bounce-of-q1") ||
		!localReceivedRE.MatchString(m.msg) || !strings.HasSuffix(m.msg, "\r\n"+stored) {
		t.Errorf("queued %+v", m)
	}
	logs := e.logs.String()
	for _, w := range []string{`msg="smtp inject: recipient dropped" from="" to=ghost@example.test reason="user unknown"`,
		`to=news@example.test reason="mailing list, no campaign engine"`, `msg="smtp message injected"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("log lacks %s:\n%s", w, logs)
		}
	}

	// No recipient routed: the error says so, nothing is written.
	err := e.srv.Inject(ctx, "", []string{"ghost@example.test", "bad address", forwardSRS(t, newSRS(t, time.Now(), "x"), "a@b.test")}, "k2", strings.NewReader(msg))
	if !errors.Is(err, ErrNoRoute) {
		t.Errorf("Inject to nobody: %v, want ErrNoRoute", err)
	}
	if err := e.srv.Inject(ctx, "", []string{"alice@example.test"}, "", strings.NewReader(msg)); err == nil {
		t.Error("Inject without a key: no error")
	}

	// The queue fails: a temporary error, nothing in the mailboxes; the
	// call again delivers once.
	q.failNext(1)
	err = e.srv.Inject(ctx, "postmaster@example.test", []string{"bob@example.test", "x@far.test"}, "0123456789abcdef0123456789abcdef", strings.NewReader(msg))
	if err == nil || errors.Is(err, ErrNoRoute) || !errors.Is(err, errQueueFull) {
		t.Fatalf("Inject with the queue failing: %v", err)
	}
	e.wantMailbox("example.test", "bob", 0)
	if err := e.srv.Inject(ctx, "postmaster@example.test", []string{"bob@example.test", "x@far.test"}, "0123456789abcdef0123456789abcdef", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if got := e.wantMailbox("example.test", "bob", 1)[0]; !strings.HasPrefix(got, "Return-Path: <postmaster@example.test>\r\n") {
		t.Errorf("bob's mailbox:\n%s", got)
	}
	if n := len(q.queued()); n != 2 {
		t.Fatalf("queued %d messages, want 2", n)
	}

	// A crash after the first delivery, before its caller recorded it:
	// after the restart the same key writes nothing more.
	md, err := maildir.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := New(Config{Settings: e.live, Directory: e.st, Deliverer: md, Queue: q, SRS: rw, Logger: e.srv.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := after.Inject(ctx, "", rcpts, "bounce-of-q1", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "alice", 1)
	e.wantMailbox("other.test", "dave", 1)
	if n := len(q.queued()); n != 2 {
		t.Errorf("queued %d messages after the retry, want 2", n)
	}
	if !strings.Contains(e.logs.String(), "injected message delivered before a restart; not delivered again") {
		t.Errorf("duplicate not logged:\n%s", e.logs)
	}
}

// localReceivedRE is the Received field Inject adds, at the start.
var localReceivedRE = regexp.MustCompile(`^Received: by ` + regexp.QuoteMeta(testHost) +
	` \(MailFountain\) with local id [0-9a-z]+\.[0-9a-z]+;\r\n\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\nFrom: `)

func TestInjectKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		key  string
		same bool
	}{
		{"0123456789abcdef", true},
		{strings.Repeat("a", 64), true},
		{"0123456789abcdef0123456789abcdef", true},
		{"0123456789ABCDEF0123456789abcdef", false},
		{"0123456789abcde", false},
		{strings.Repeat("a", 65), false},
		{"bounce-of-q1", false},
	} {
		got := injectKey(c.key)
		if (got == c.key) != c.same {
			t.Errorf("injectKey(%q) = %q", c.key, got)
		}
		if !c.same && (len(got) != 32 || injectKey(got) != got) {
			t.Errorf("injectKey(%q) = %q, not 32 hex digits", c.key, got)
		}
	}
}

// pythonMixed sends one message to a mailbox and an outside address
// through submission with python3's smtplib, as a mail client does, until
// it is accepted, and prints the codes of the attempts.
const pythonMixed = `
import json, smtplib, ssl, sys
port, pw = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = "From: Alice <alice@example.test>\r\nTo: bob@example.test, Cust <cust@Remote.test>\r\nSubject: mixed\r\n\r\nHello.\r\n"
codes = []
for attempt in range(3):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="py.test", timeout=10)
    s.starttls(context=ctx)
    s.login("alice@example.test", pw)
    try:
        refused = s.sendmail("alice@example.test", ["bob@example.test", "cust@Remote.test"], msg)
        codes.append(250 if not refused else 0)
        s.quit()
        break
    except smtplib.SMTPResponseException as e:
        codes.append(e.smtp_code)
        s.quit()
print(json.dumps(codes))
`

// TestPythonMixed: a mail client's message to a mailbox and a customer
// outside, while the queue fails once: 451 for the whole message, then
// one copy in the mailbox and one in the queue.
func TestPythonMixed(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "python3")
	q := &recordingQueue{}
	q.failNext(1)
	e := newEnv(t, func(c *Config) { c.Queue = q })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", pythonMixed, port(t, e.sub), alicePassword).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "[451, 250]" {
		t.Fatalf("attempts answered %s, want [451, 250]", got)
	}
	e.wantMailbox("example.test", "bob", 1)
	msgs := q.queued()
	if len(msgs) != 1 || !slices.Equal(msgs[0].env.Rcpts, []string{"cust@Remote.test"}) || msgs[0].env.From != "alice@example.test" {
		t.Fatalf("queued %+v", msgs)
	}
}
