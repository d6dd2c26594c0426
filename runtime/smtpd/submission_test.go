package smtpd

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestPasswordAuthPolicy(t *testing.T) {
	t.Parallel()
	lan := netip.MustParsePrefix("192.168.1.0/24")
	for _, c := range []struct {
		legacy bool
		tls    bool
		remote string
		want   bool
	}{
		{false, true, "203.0.113.9", true},
		{false, true, "192.168.1.20", true},
		{false, false, "192.168.1.20", false},
		{false, false, "127.0.0.1", false},
		{true, false, "192.168.1.20", true},
		{true, false, "::ffff:192.168.1.20", true},
		{true, false, "127.0.0.1", true},
		{true, false, "::1", true},
		{true, false, "203.0.113.9", false},
		{true, false, "192.168.2.20", false},
		{true, true, "203.0.113.9", true},
	} {
		set := mailconf.Settings{LAN: []netip.Prefix{lan}, LegacyPlainAuth: c.legacy}
		if got := set.PasswordAuthAllowed(c.tls, netip.MustParseAddr(c.remote)); got != c.want {
			t.Errorf("legacy=%v tls=%v from %s: allowed=%v, want %v", c.legacy, c.tls, c.remote, got, c.want)
		}
	}
}

func TestSubmissionWithoutTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rc := dialRaw(t, e.sub)
	rc.reply()
	ehlo := rc.ehlo()
	if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO in clear without legacy_plain_auth:\n%s", ehlo)
	}
	rc.expect("AUTH PLAIN "+b64("\x00alice@example.test\x00"+alicePassword), "538 5.7.11")
	rc.expect("AUTH LOGIN", "538 5.7.11")
	rc.expect("MAIL FROM:<alice@example.test>", "530 5.7.0")
	// Not an open relay without AUTH either.
	rc.expect("RCPT TO:<someone@remote.test>", "502 5.5.1")
	if !strings.Contains(e.logs.String(), "reason=\"AUTH without TLS\"") {
		t.Errorf("refusal not logged:\n%s", e.logs)
	}
}

func TestSubmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.submit("Alice@Example.test", alicePassword)
	if err := send(c, "alice@example.test", []string{"bob@example.test", "team@example.test"}, messageFrom("Alice <alice@example.test>", "sub")); err != nil {
		t.Fatal(err)
	}
	rp, rec, _ := trace(t, e.wantMailbox("example.test", "bob", 1)[0])
	if rp != "alice@example.test" || rec[0] != "localhost" || rec[4] != "ESMTPSA" {
		t.Errorf("Return-Path <%s>, Received %q: want alice, from localhost, with ESMTPSA", rp, rec)
	}
	e.wantMailbox("example.test", "alice", 1) // team -> alice

	// Sender addresses: the account's own and its aliases, any case.
	for _, from := range []string{"boss@example.test", "ALICE@EXAMPLE.TEST"} {
		if err := send(c, from, []string{"carol@example.test"}, messageFrom(from, "from")); err != nil {
			t.Errorf("MAIL FROM:<%s>: %v", from, err)
		}
	}
	for _, from := range []string{"bob@example.test", "sales@example.test", "dave@other.test", "alice@other.test", "team@example.test", "nobody@example.test", "alice@remote.test", ""} {
		wantCode(t, c.Mail(from, nil), 553, "5.7.1")
	}
	if err := c.Mail("alice@example.test", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Rcpt("someone@remote.test", nil), 451, "4.3.0")
	wantCode(t, c.Rcpt("nobody@example.test", nil), 550, "5.1.1")
	if err := c.Rcpt("dave@other.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}

	// Implicit TLS, AUTH LOGIN.
	c2 := e.client(e.subs, implicitTLS)
	if ok, mechs := c2.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("AUTH on 465: %v %q", ok, mechs)
	}
	if ok, _ := c2.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered under implicit TLS")
	}
	wantCode(t, c2.Mail("dave@other.test", nil), 530, "5.7.0")
	if err := c2.Auth(sasl.NewLoginClient("dave@other.test", davePassword)); err != nil {
		t.Fatal(err)
	}
	if err := send(c2, "dave@other.test", []string{"carol@example.test"}, messageFrom("dave@other.test", "465")); err != nil {
		t.Fatal(err)
	}
	msgs := e.wantMailbox("example.test", "carol", 3)
	found := false
	for _, m := range msgs {
		if strings.Contains(m, "Subject: 465") {
			_, rec, _ := trace(t, m)
			found = rec[4] == "ESMTPSA" && rec[0] == "client.test"
		}
	}
	if !found {
		t.Errorf("message through 465 not delivered with ESMTPSA:\n%q", msgs)
	}
	for _, pw := range []string{alicePassword, davePassword} {
		if strings.Contains(e.logs.String(), pw) {
			t.Fatalf("a password is in the log:\n%s", e.logs)
		}
	}
	if !strings.Contains(e.logs.String(), "user=dave@other.test") {
		t.Errorf("accepted message logged without its user:\n%s", e.logs)
	}
}

func TestSubmissionAuthFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.Auth = auth.NewAuthenticatorLimits(c.Directory.(*store.Store), nil, auth.Limits{AccountFailures: 2, FailureEvery: time.Hour})
	})
	c := e.client(e.sub, startTLS)
	for _, a := range []sasl.Client{
		sasl.NewPlainClient("", "alice@example.test", "wrong"),
		sasl.NewLoginClient("nobody@example.test", alicePassword),
		sasl.NewLoginClient("alice@example.test", "wrong"),
	} {
		wantCode(t, c.Auth(a), 535, "5.7.8")
	}
	wantCode(t, c.Auth(sasl.NewPlainClient("", "alice@example.test", alicePassword)), 454, "4.7.0")
	if strings.Contains(e.logs.String(), "wrong") {
		t.Fatalf("a password is in the log:\n%s", e.logs)
	}
	if !strings.Contains(e.logs.String(), `reason="invalid credentials" user=alice@example.test`) {
		t.Errorf("failed login not logged:\n%s", e.logs)
	}
}

func TestSubmissionAuthzid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client(e.sub, startTLS)
	wantCode(t, c.Auth(sasl.NewPlainClient("bob@example.test", "alice@example.test", alicePassword)), 535, "5.7.8")
	if err := c.Auth(sasl.NewPlainClient("alice@example.test", "alice@example.test", alicePassword)); err != nil {
		t.Fatal(err)
	}
}

func TestSubmissionLoginRaw(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		set := c.Settings.Load()
		set.LegacyPlainAuth = true
		c.Settings.Store(set)
	})
	// legacy_plain_auth and a loopback (LAN) client: AUTH in clear.
	rc := dialRaw(t, e.sub)
	rc.reply()
	if ehlo := rc.ehlo(); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO with legacy_plain_auth from the LAN:\n%s", ehlo)
	}
	rc.expect("AUTH LOGIN", "334 "+b64("Username:"))
	rc.expect(b64("bob@example.test"), "334 "+b64("Password:"))
	rc.expect(b64(bobPassword), "235 2.0.0")
	rc.expect("AUTH PLAIN", "503 5.5.1") // already authenticated
	rc.expect("MAIL FROM:<sales@example.test>", "250 ")
	rc.expect("RCPT TO:<alice@example.test>", "250 ")
	rc.expect("DATA", "354 ")
	rc.send("From: sales@example.test\r\nSubject: legacy\r\n\r\nhi\r\n.")
	rc.expectReply("250 2.0.0 OK id=")
	if _, rec, _ := trace(t, e.wantMailbox("example.test", "alice", 1)[0]); rec[4] != "ESMTPA" {
		t.Errorf("Received with %s, want ESMTPA", rec[4])
	}

	// A cancelled LOGIN, then a client giving the user name at once.
	rc2 := dialRaw(t, e.sub)
	rc2.reply()
	rc2.expect("EHLO client.test", "250 ")
	rc2.expect("AUTH LOGIN", "334 ")
	rc2.expect("*", "501 5.0.0")
	rc2.expect("AUTH LOGIN "+b64("alice@example.test"), "334 "+b64("Password:"))
	rc2.expect(b64("nope"), "535 5.7.8")

	// The flag off again: the next connection has no AUTH in clear.
	set := e.live.Load()
	set.LegacyPlainAuth = false
	e.live.Store(set)
	rc3 := dialRaw(t, e.sub)
	rc3.reply()
	rc3.send("EHLO client.test")
	if ehlo := strings.Join(rc3.reply(), "\n"); strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO after legacy_plain_auth was turned off:\n%s", ehlo)
	}
	rc3.expect("AUTH LOGIN", "538 5.7.11")
}

func TestDirectoryChangesApplyAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	const newPassword = "alice-New-Secret-7"
	c := e.submit("alice@example.test", alicePassword)
	wantCode(t, send(c, "alice@example.test", []string{"erin@example.test"}, testMessage("x")), 550, "5.1.1")
	_, err := e.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "erin", Name: "Erin"}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "alice", Name: "Alice", PasswordHash: hashPassword(t, newPassword)}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "alice@example.test", []string{"erin@example.test"}, messageFrom("alice@example.test", "x")); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "erin", 1)
	wantCode(t, e.client(e.sub, startTLS).Auth(sasl.NewPlainClient("", "alice@example.test", alicePassword)), 535, "5.7.8")
	e.submit("alice@example.test", newPassword)
}

func TestQueueHook(t *testing.T) {
	t.Parallel()
	q := &recordingQueue{}
	e := newEnv(t, func(c *Config) { c.Queue = q })
	c := e.submit("alice@example.test", alicePassword)
	if err := send(c, "alice@example.test", []string{"Someone@Remote.test", "bob@example.test", "someone@remote.test"}, messageFrom("alice@example.test", "out")); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "bob", 1)
	// The MX: a redirection pointing outside is forwarded; still no relay.
	mx := e.client(e.mx, plain)
	if err := send(mx, "x@elsewhere.test", []string{"fwd@example.test"}, testMessage("fwd")); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "alice", 1)
	if err := mx.Mail("x@elsewhere.test", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, mx.Rcpt("someone@remote.test", nil), 554, "5.7.1")

	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) != 2 {
		t.Fatalf("queued %d messages, want 2", len(q.msgs))
	}
	if m := q.msgs[0]; m.env.From != "alice@example.test" || strings.Join(m.env.Rcpts, ",") != "Someone@Remote.test,someone@remote.test" || m.env.Forward != nil ||
		!strings.HasPrefix(m.msg, "Received: from localhost (localhost [127.0.0.1])\r\n") || !strings.HasSuffix(m.msg, messageFrom("alice@example.test", "out")) {
		t.Errorf("queued %+v", m)
	}
	if m := q.msgs[1]; m.env.From != "x@elsewhere.test" || m.env.Rcpts != nil || strings.Join(m.env.Forward, ",") != "someone@remote.test" || strings.Contains(m.msg, "Return-Path") {
		t.Errorf("queued %+v", m)
	}
}

// failingDeliverer stands for a disk that refuses the message.
type failingDeliverer struct{}

func (failingDeliverer) DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (bool, error) {
	return false, errors.New("disk full")
}

func TestDeliveryFailures(t *testing.T) {
	t.Parallel()
	t.Run("mailbox", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Deliverer = failingDeliverer{} })
		wantCode(t, send(e.client(e.mx, plain), "a@remote.test", []string{"alice@example.test"}, testMessage("f")), 451, "4.3.0")
		if !strings.Contains(e.logs.String(), `level=ERROR msg="smtp delivery failed"`) || !strings.Contains(e.logs.String(), "disk full") {
			t.Errorf("failure not logged:\n%s", e.logs)
		}
	})
	t.Run("spool", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.MemoryBuffer = 100
			c.TempDir += "/missing"
		})
		c := e.client(e.mx, plain)
		wantCode(t, send(c, "a@remote.test", []string{"alice@example.test"}, testMessage(strings.Repeat("x", 200))), 451, "4.3.0")
		e.wantMailbox("example.test", "alice", 0)
		// Small messages still go through.
		if err := send(c, "a@remote.test", []string{"alice@example.test"}, "Subject: s\r\n\r\nx\r\n"); err != nil {
			t.Fatal(err)
		}
		e.wantMailbox("example.test", "alice", 1)
	})
}

// TestSubmissionFrom: the From field of a submitted message must hold
// the account's addresses or aliases, and only them.
func TestSubmissionFrom(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		set := c.Settings.Load()
		set.LegacyPlainAuth = true // AUTH in clear for the raw client
		c.Settings.Store(set)
	})
	rc := dialRaw(t, e.sub)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("AUTH PLAIN "+b64("\x00alice@example.test\x00"+alicePassword), "235 ")
	delivered := 0
	for _, c := range []struct {
		name   string
		header string // before "Subject: ...\r\n\r\nbody\r\n"
		reply  string
	}{
		{"address", "From: alice@example.test\r\n", "250 2.0.0"},
		{"name and address", "From: Alice <alice@example.test>\r\n", "250 2.0.0"},
		{"case", "From: ALICE@Example.Test\r\n", "250 2.0.0"},
		{"alias", "From: Boss <boss@example.test>\r\n", "250 2.0.0"},
		{"quoted name", "From: \"Alice \\\"A.\\\" Liddell, boss\" <alice@example.test>\r\n", "250 2.0.0"},
		{"encoded name", "From: =?utf-8?q?Alic=C3=A9?= <boss@example.test>\r\n", "250 2.0.0"},
		{"quoted local part", "From: \"alice\"@example.test\r\n", "250 2.0.0"},
		{"comment", "From: alice@example.test (Alice)\r\n", "250 2.0.0"},
		{"folded", "From: Alice\r\n\t<alice@example.test>\r\n", "250 2.0.0"},
		{"no space, lower case", "from:alice@example.test\r\n", "250 2.0.0"},
		{"space before the colon", "From : alice@example.test\r\n", "250 2.0.0"},
		{"both of the account", "From: alice@example.test, Boss <boss@example.test>\r\n", "250 2.0.0"},
		{"group of the account", "From: Us: alice@example.test, boss@example.test;\r\n", "250 2.0.0"},
		{"From-like continuation line", "X-A: b\r\n From: bob@example.test\r\nFrom: alice@example.test\r\n", "250 2.0.0"},

		{"another account", "From: bob@example.test\r\n", "550 5.7.1"},
		{"alias of another account", "From: sales@example.test\r\n", "550 5.7.1"},
		{"another domain's account", "From: dave@other.test\r\n", "550 5.7.1"},
		{"same local part, other domain", "From: alice@other.test\r\n", "550 5.7.1"},
		{"no such address", "From: nobody@example.test\r\n", "550 5.7.1"},
		{"redirection", "From: team@example.test\r\n", "550 5.7.1"},
		{"mailing list", "From: news@example.test\r\n", "550 5.7.1"},
		{"remote", "From: alice@remote.test\r\n", "550 5.7.1"},
		{"two mailboxes, one not owned", "From: Alice <alice@example.test>, bob@example.test\r\n", "550 5.7.1"},
		{"group with another account", "From: Team: alice@example.test, bob@example.test;\r\n", "550 5.7.1"},
		{"empty group", "From: undisclosed-recipients:;\r\n", "550 5.7.1"},
		{"address as display name", "From: \"alice@example.test\" <bob@example.test>\r\n", "550 5.7.1"},
		{"unquoted address before the real one", "From: alice@example.test <bob@example.test>\r\n", "550 5.7.1"},
		{"empty", "From: \r\n", "550 5.7.1"},
		{"no From", "To: bob@example.test\r\n", "550 5.7.1"},
		{"two From fields", "From: alice@example.test\r\nFrom: bob@example.test\r\n", "550 5.7.1"},
		{"two From fields of the account", "From: alice@example.test\r\nFROM: alice@example.test\r\n", "550 5.7.1"},
		{"From after bare LFs", "From: alice@example.test\nX-A: b\nFrom: bob@example.test\r\n", "550 5.7.1"},
		{"From after a bare CR", "From: alice@example.test\r\nX-A: b\rFrom: bob@example.test\r\n", "550 5.6.0"},
	} {
		rc.expect("MAIL FROM:<alice@example.test>", "250 ")
		rc.expect("RCPT TO:<bob@example.test>", "250 ")
		data := c.header + "Subject: " + c.name + "\r\n\r\nbody\r\n"
		if got := rc.data(data); !strings.HasPrefix(got, c.reply) {
			t.Errorf("%s: reply %q, want %s", c.name, got, c.reply)
			continue
		}
		if !strings.HasPrefix(c.reply, "250") {
			continue
		}
		delivered++
		found := false
		for _, m := range e.mailbox("example.test", "bob") {
			if _, _, rest := trace(t, m); rest == data {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: not delivered as sent", c.name)
		}
	}
	e.wantMailbox("example.test", "bob", delivered)
	// A body line is no From field.
	rc.expect("MAIL FROM:<alice@example.test>", "250 ")
	rc.expect("RCPT TO:<bob@example.test>", "250 ")
	if got := rc.data("Subject: x\r\n\r\nFrom: alice@example.test\r\n"); !strings.HasPrefix(got, "550 5.7.1") {
		t.Errorf("From in the body only: %q, want 550 5.7.1", got)
	}
	logs := e.logs.String()
	for _, want := range []string{`reason="From address not owned"`, `header_from=bob@example.test`, `reason="From field" err="several From fields"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
