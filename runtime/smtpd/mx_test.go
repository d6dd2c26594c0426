package smtpd

import (
	"context"
	"net/mail"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
)

// receivedRE is the Received field the server adds, folded as it folds it.
var receivedRE = regexp.MustCompile(`^Received: from (\S+) \((\S+) \[([0-9a-fA-F.:IPv]+)\]\)\r\n` +
	`\tby (\S+) \(MailFountain\) with (ESMTPS?A?) id ([0-9a-z]+\.[0-9a-z]+)(?:\r\n\tfor <([^>]+)>; |;\r\n\t)` +
	`([^\r\n]+)\r\n`)

// trace splits a delivered message into its Return-Path, the Received
// field's parts and the rest, checking their form.
func trace(t *testing.T, msg string) (returnPath string, rec []string, rest string) {
	t.Helper()
	rp, after, ok := strings.Cut(msg, "\r\n")
	if !ok || !strings.HasPrefix(rp, "Return-Path: <") || !strings.HasSuffix(rp, ">") {
		t.Fatalf("message does not start with a Return-Path field:\n%s", msg)
	}
	m := receivedRE.FindStringSubmatchIndex(after)
	if m == nil || m[0] != 0 {
		t.Fatalf("no well-formed Received field after Return-Path:\n%s", after)
	}
	rec = make([]string, 0, 8)
	for i := 2; i < len(m); i += 2 {
		if m[i] < 0 {
			rec = append(rec, "")
		} else {
			rec = append(rec, after[m[i]:m[i+1]])
		}
	}
	if _, err := mail.ParseDate(rec[7]); err != nil {
		t.Fatalf("Received date %q: %v", rec[7], err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(rp, "Return-Path: <"), ">"), rec, after[m[1]:]
}

func TestMXDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client(e.mx, plain)

	msg := testMessage("one")
	if err := send(c, "Sender@Remote.test", []string{"alice@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	got := e.wantMailbox("example.test", "alice", 1)[0]
	rp, rec, rest := trace(t, got)
	if rp != "Sender@Remote.test" {
		t.Errorf("Return-Path <%s>", rp)
	}
	want := []string{"client.test", "localhost", "127.0.0.1", testHost, "ESMTP"}
	if strings.Join(rec[:5], " ") != strings.Join(want, " ") {
		t.Errorf("Received from/by/with = %q, want %q", rec[:5], want)
	}
	if rec[6] != "alice@example.test" {
		t.Errorf("Received for <%s>, want the one recipient", rec[6])
	}
	if rest != msg {
		t.Errorf("message after the trace fields:\n%q\nwant\n%q", rest, msg)
	}
	if !strings.Contains(e.logs.String(), `msg="smtp message accepted" id=`+rec[5]) {
		t.Errorf("no log line for the message %s:\n%s", rec[5], e.logs)
	}

	// Case-insensitive local parts and domains, an alias of the same
	// account in the same transaction: one copy.
	if err := send(c, "sender@remote.test", []string{"ALICE@Example.TEST", "Boss@example.test"}, testMessage("two")); err != nil {
		t.Fatal(err)
	}
	msgs := e.wantMailbox("example.test", "alice", 2)
	_, rec, _ = trace(t, msgs[1])
	if rec[6] != "" {
		t.Errorf("Received names a recipient (%q) of a message for two", rec[6])
	}

	// A bare <Postmaster> (RFC 5321 4.5.1) is the postmaster of the first
	// domain; without a domain applied yet, it is refused.
	if err := send(c, "sender@remote.test", []string{"Postmaster"}, testMessage("pm")); err != nil {
		t.Fatal(err)
	}
	if _, rec, _ := trace(t, e.wantMailbox("example.test", "postmaster", 1)[0]); rec[6] != "postmaster@example.test" {
		t.Errorf("Received for <%s>, want postmaster@example.test", rec[6])
	}
	set := e.live.Load()
	set.Domain = ""
	e.live.Store(set)
	c2 := e.client(e.mx, plain)
	if err := c2.Mail("sender@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c2.Rcpt("postmaster", nil), 501, "5.1.3")

	// The null reverse path (bounces) is accepted.
	if err := send(c, "", []string{"bob@example.test"}, testMessage("bounce")); err != nil {
		t.Fatal(err)
	}
	if rp, _, _ := trace(t, e.wantMailbox("example.test", "bob", 1)[0]); rp != "" {
		t.Errorf("Return-Path <%s>, want <>", rp)
	}
}

func TestMXRedirections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client(e.mx, plain)
	// all -> team (-> alice, sales -> bob), boss (-> alice), carol,
	// dave@other.test: one copy each, dave's on the other domain of the
	// box.
	if err := send(c, "x@remote.test", []string{"all@example.test"}, testMessage("all")); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][2]string{{"example.test", "alice"}, {"example.test", "bob"}, {"example.test", "carol"}, {"other.test", "dave"}} {
		e.wantMailbox(a[0], a[1], 1)
	}
	// A cycle: loop1 -> loop2 -> loop1; carol and alice once.
	if err := send(c, "x@remote.test", []string{"loop1@example.test"}, testMessage("loop")); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "carol", 2)
	e.wantMailbox("example.test", "alice", 2)
	// Overlapping recipients of one transaction: still one copy each.
	if err := send(c, "x@remote.test", []string{"team@example.test", "bob@example.test", "loop2@example.test"}, testMessage("overlap")); err != nil {
		t.Fatal(err)
	}
	e.wantMailbox("example.test", "alice", 3)
	e.wantMailbox("example.test", "bob", 2)
	e.wantMailbox("example.test", "carol", 3)
	e.wantMailbox("example.test", "postmaster", 0)
}

func TestMXRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxErrors = 100 })
	rc := dialRaw(t, e.mx)
	if g := rc.reply(); !strings.HasPrefix(g[0], "220 "+testHost+" ") {
		t.Fatalf("greeting %q", g)
	}
	ehlo := rc.ehlo()
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("the MX advertises AUTH:\n%s", ehlo)
	}
	for _, want := range []string{"STARTTLS", "SIZE 26214400", "PIPELINING", "8BITMIME"} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("EHLO does not advertise %s:\n%s", want, ehlo)
		}
	}
	rc.expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1TZWNyZXQtNDI=", "502 5.5.1")
	rc.expect("MAIL FROM:<spammer@remote.test>", "250 ")
	for _, c := range []struct{ rcpt, want, text string }{
		{"nobody@example.test", "550 5.1.1", ""},
		{"NoBody@Other.Test", "550 5.1.1", ""},
		{"someone@remote.test", "554 5.7.1", "Relay access denied"},
		{"alice@example.test.remote.test", "554 5.7.1", ""},
		{"alice@[127.0.0.1]", "554 5.7.1", ""},
		{"\"alice@example.test\"@remote.test", "554 5.7.1", ""},
		{"news@example.test", "451 4.3.0", "campaign engine"},
		{"tolist@example.test", "451 4.3.0", "campaign engine"},
		{"fwd@example.test", "451 4.3.0", "outbound queue"},
		{"dangling@example.test", "550 5.1.1", ""},
		{"postmaster@other.test", "250 ", ""},
		{"PostMaster", "250 ", ""}, // RFC 5321 4.5.1: the first domain's
		{"abuse", "501 5.5.2", ""}, // only postmaster goes without a domain
	} {
		got := rc.expect("RCPT TO:<"+c.rcpt+">", c.want)
		if !strings.Contains(got, c.text) {
			t.Errorf("RCPT %s: %q, want %q in it", c.rcpt, got, c.text)
		}
	}
	rc.expect("DATA", "354 ")
	rc.send("Subject: test\r\n\r\nbody\r\n.")
	rc.expectReply("250 2.0.0 OK id=")
	e.wantMailbox("other.test", "postmaster", 1)
	e.wantMailbox("example.test", "postmaster", 1)
	logs := e.logs.String()
	for _, want := range []string{"reason=\"relay access denied\"", "reason=\"user unknown\"", "reason=\"mailing list, no campaign engine\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestMXSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MemoryBuffer = 4096 })
	set := e.live.Load()
	set.MaxMessageBytes = 20000
	e.live.Store(set)

	rc := dialRaw(t, e.mx)
	rc.reply()
	if ehlo := rc.ehlo(); !strings.Contains(ehlo, "SIZE 20000") {
		t.Errorf("EHLO does not advertise SIZE 20000:\n%s", ehlo)
	}
	rc.expect("MAIL FROM:<a@remote.test> SIZE=20001", "552 5.3.4 Message size exceeds the 20000-byte limit")
	rc.expect("MAIL FROM:<a@remote.test> SIZE=19000", "250 ")
	rc.expect("RCPT TO:<alice@example.test>", "250 ")
	rc.expect("DATA", "354 ")
	line := strings.Repeat("x", 98) + "\r\n"
	rc.send("Subject: big\r\n\r\n" + strings.Repeat(line, 250) + ".") // 25 kB
	rc.expectReply("552 5.3.4 Message size exceeds the 20000-byte limit")
	// The session goes on; a message larger than the memory buffer,
	// within the limit, goes through a temporary file.
	rc.expect("MAIL FROM:<a@remote.test>", "250 ")
	rc.expect("RCPT TO:<alice@example.test>", "250 ")
	rc.expect("DATA", "354 ")
	body := strings.Repeat(line, 150) // 15 kB
	rc.send("Subject: spilled\r\n\r\n" + body + ".")
	rc.expectReply("250 2.0.0 OK id=")
	got := e.wantMailbox("example.test", "alice", 1)[0]
	if _, _, rest := trace(t, got); rest != "Subject: spilled\r\n\r\n"+body {
		t.Errorf("spilled message altered: %d bytes, want %d", len(rest), len("Subject: spilled\r\n\r\n"+body))
	}
	if ents, err := os.ReadDir(e.cfg.TempDir); err != nil || len(ents) != 0 {
		t.Errorf("temporary directory holds %v (%v), want nothing", ents, err)
	}
	if !strings.Contains(e.logs.String(), `reply="552 5.3.4 Message size exceeds the 20000-byte limit"`) {
		t.Errorf("SIZE refusal at MAIL not logged:\n%s", e.logs)
	}
	if !strings.Contains(e.logs.String(), "reason=\"message too large\"") {
		t.Errorf("no refusal logged for the large message:\n%s", e.logs)
	}
}

// TestSizeLimitReply: the 552 reply names the limit of the settings, at
// MAIL SIZE=, at the end of DATA and at BDAT.
func TestSizeLimitReply(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		limit int64
		want  string
		data  bool // also send a message over the limit
	}{
		{mailconf.DefaultMaxMessageBytes, "552 5.3.4 Message size exceeds the 25 MB limit", false},
		{1 << 20, "552 5.3.4 Message size exceeds the 1 MB limit", true},
		{3 << 20, "552 5.3.4 Message size exceeds the 3 MB limit", false},
		{20000, "552 5.3.4 Message size exceeds the 20000-byte limit", true},
		{1<<20 + 1, "552 5.3.4 Message size exceeds the 1048577-byte limit", false},
	} {
		t.Run(strconv.FormatInt(tt.limit, 10), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			if tt.limit != mailconf.DefaultMaxMessageBytes {
				set := e.live.Load()
				set.MaxMessageBytes = tt.limit
				e.live.Store(set)
			}
			rc := dialRaw(t, e.mx)
			rc.reply()
			rc.expect("EHLO client.test", "250 ")
			over := strconv.FormatInt(tt.limit+1, 10)
			if got := rc.cmd("MAIL FROM:<a@remote.test> SIZE=" + over); got != tt.want {
				t.Fatalf("MAIL SIZE=%s: %q, want %q", over, got, tt.want)
			}
			if !tt.data {
				return
			}
			rc.expect("MAIL FROM:<a@remote.test>", "250 ")
			rc.expect("RCPT TO:<alice@example.test>", "250 ")
			rc.expect("DATA", "354 ")
			rc.send("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", int(tt.limit/100)+1) + ".")
			if got := rc.reply(); got[0] != tt.want {
				t.Fatalf("end of DATA: %q, want %q", got, tt.want)
			}
			rc.expect("MAIL FROM:<a@remote.test>", "250 ")
			rc.expect("RCPT TO:<alice@example.test>", "250 ")
			// limit+1 bytes in lines of 100, the last CRLF the one send
			// adds. (go-smtp bounds the lines of a chunk it refuses.)
			chunk := strings.Repeat(strings.Repeat("x", 98)+"\r\n", int(tt.limit+1)/100) + strings.Repeat("x", int(tt.limit+1)%100)
			if got := rc.cmd("BDAT " + over + " LAST\r\n" + chunk[:len(chunk)-2]); got != tt.want {
				t.Fatalf("BDAT %s: %q, want %q", over, got, tt.want)
			}
			rc.expect("NOOP", "250 ")
			e.wantMailbox("example.test", "alice", 0)
		})
	}
}

func TestMXLimits(t *testing.T) {
	t.Parallel()
	t.Run("recipients", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxRecipients = 3 })
		c := e.client(e.mx, plain)
		if err := c.Mail("a@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"alice@example.test", "bob@example.test", "carol@example.test"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Fatal(err)
			}
		}
		wantCode(t, c.Rcpt("postmaster@example.test", nil), 452, "4.5.3")
	})
	t.Run("default recipients", func(t *testing.T) {
		e := newEnv(t, nil)
		rc := dialRaw(t, e.mx)
		rc.reply()
		rc.expect("EHLO client.test", "250 ")
		rc.expect("MAIL FROM:<a@remote.test>", "250 ")
		for i := 0; i < DefaultMaxRecipients; i++ {
			rc.expect("RCPT TO:<alice@example.test>", "250 ")
		}
		rc.expect("RCPT TO:<alice@example.test>", "452 4.5.3")
	})
	t.Run("line length", func(t *testing.T) {
		e := newEnv(t, nil)
		rc := dialRaw(t, e.mx)
		rc.reply()
		rc.expect("EHLO client.test", "250 ")
		rc.send("NOOP " + strings.Repeat("a", DefaultMaxLineLength))
		if lines := rc.closed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "500 5.4.0") {
			t.Fatalf("after a long line: %q, want 500 5.4.0 and close", lines)
		}
	})
	t.Run("line length in data", func(t *testing.T) {
		e := newEnv(t, nil)
		rc := dialData(t, e.mx)
		rc.send("Subject: x\r\n\r\n" + strings.Repeat("a", DefaultMaxLineLength+10) + "\r\n.")
		lines := rc.closed()
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "500 5.4.0") {
			t.Fatalf("after a long data line: %q, want 500 5.4.0 and close", lines)
		}
		e.wantMailbox("example.test", "alice", 0)
	})
	t.Run("commands", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxCommands = 5 })
		rc := dialRaw(t, e.mx)
		rc.reply()
		rc.expect("EHLO client.test", "250 ")
		for i := 0; i < 3; i++ {
			rc.expect("NOOP", "250 ")
		}
		rc.send("NOOP")
		if lines := rc.closed(); len(lines) != 2 || !strings.HasPrefix(lines[0], "250 ") || !strings.HasPrefix(lines[1], "421 4.7.0") {
			t.Fatalf("at the command limit: %q, want 250 then 421 4.7.0 and close", lines)
		}
	})
	t.Run("commands reset by a message", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxCommands = 5 })
		c := e.client(e.mx, plain)
		for i := 0; i < 4; i++ { // 3 commands each, 12 in all
			if err := send(c, "a@remote.test", []string{"bob@example.test"}, testMessage("m")); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxErrors = 3 })
		rc := dialRaw(t, e.mx)
		rc.reply()
		rc.expect("EHLO client.test", "250 ")
		rc.expect("MAIL FROM:<a@remote.test>", "250 ")
		rc.expect("RCPT TO:<x1@example.test>", "550 5.1.1")
		rc.expect("RCPT TO:<x2@example.test>", "550 5.1.1")
		rc.send("RCPT TO:<x3@example.test>")
		if lines := rc.closed(); len(lines) != 2 || !strings.HasPrefix(lines[0], "550 5.1.1") || !strings.HasPrefix(lines[1], "421 4.7.0") {
			t.Fatalf("at the error limit: %q, want 550 then 421 4.7.0 and close", lines)
		}
	})
	t.Run("errors under TLS", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxErrors = 2 })
		c := e.client(e.mx, startTLS)
		if err := c.Mail("a@remote.test", nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, c.Rcpt("x1@example.test", nil), 550, "5.1.1")
		wantCode(t, c.Rcpt("x2@example.test", nil), 550, "5.1.1")
		if err := c.Noop(); err == nil {
			t.Fatal("NOOP after the error limit succeeded")
		}
	})
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
		rc := dialRaw(t, e.mx)
		rc.reply()
		start := time.Now()
		if lines := rc.closed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2") {
			t.Fatalf("idle client: %q, want 421 4.4.2 and close", lines)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("idle client closed after %v", d)
		}
	})
	t.Run("data timeout", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.DataTimeout = 300 * time.Millisecond })
		rc := dialData(t, e.mx)
		rc.send("Subject: stalled")
		time.Sleep(600 * time.Millisecond)
		// The rest of the data must not be taken for commands.
		rc.conn.Write([]byte("RSET\r\nMAIL FROM:<b@remote.test>\r\n"))
		if lines := rc.closed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2") {
			t.Fatalf("stalled data: %q, want 421 4.4.2 and close", lines)
		}
		e.wantMailbox("example.test", "alice", 0)
	})
	t.Run("session lifetime", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.SessionLifetime = 700 * time.Millisecond
			c.IdleTimeout = 10 * time.Second
		})
		rc := dialRaw(t, e.mx)
		rc.reply()
		start := time.Now()
		rc.expect("EHLO client.test", "250 ")
		rc.expect("MAIL FROM:<a@remote.test>", "250 ")
		rc.expect("RCPT TO:<alice@example.test>", "250 ")
		rc.expect("DATA", "354 ")
		// A client that trickles its data forever.
		go func() {
			for i := 0; i < 40; i++ {
				if _, err := rc.conn.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		rc.closed()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("session closed after %v, lifetime 700ms", d)
		}
		e.wantMailbox("example.test", "alice", 0)
	})
}

func TestAdmitPerIP(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Directory: nilDirectory{}, Deliverer: &recordingDeliverer{},
		MaxConnectionsPerIP: 2, MaxConnections: 8, MaxSubmissionConnectionsPerIP: 1, MaxSubmissionConnections: 3})
	if err != nil {
		t.Fatal(err)
	}
	lan, other := mustAddr("192.0.2.7"), mustAddr("2001:db8::1")
	for i, c := range []struct {
		kind kind
		addr string
		ok   bool
	}{
		{kindMX, "192.0.2.7", true}, {kindMX, "192.0.2.7", true}, {kindMX, "192.0.2.7", false},
		{kindMX, "2001:db8::1", true}, {kindMX, "2001:db8::1", true}, {kindMX, "2001:db8::1", false},
		{kindMX, "127.0.0.1", true}, {kindMX, "127.0.0.1", true}, {kindMX, "127.0.0.1", true}, {kindMX, "::1", true},
		{kindMX, "127.0.0.1", false}, // 8 in all
		// Submission has its own pool, 587 and 465 together: a full MX
		// does not count, nor do the MX connections of an address.
		{kindSubmission, "192.0.2.7", true}, {kindSubmissions, "192.0.2.7", false}, {kindSubmission, "192.0.2.7", false},
		{kindSubmissions, "2001:db8::1", true}, {kindSubmission, "127.0.0.1", true},
		{kindSubmission, "127.0.0.1", false}, // 3 in all
	} {
		if got := s.admit(c.kind, mustAddr(c.addr)) == ""; got != c.ok {
			t.Fatalf("admit #%d (%s on %s) = %v, want %v", i, c.addr, c.kind, got, c.ok)
		}
	}
	s.release(kindMX, lan)
	if s.admit(kindMX, lan) != "" {
		t.Fatal("a released slot is not reusable")
	}
	if s.admit(kindMX, other) == "" {
		t.Fatal("admit over the limit")
	}
	s.release(kindSubmissions, lan)
	if s.admit(kindSubmission, lan) != "" {
		t.Fatal("a released submission slot is not reusable")
	}
}

func TestSettingsApplyToNextConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rc := dialRaw(t, e.mx)
	if g := rc.reply(); !strings.HasPrefix(g[0], "220 "+testHost+" ") {
		t.Fatalf("greeting %q", g)
	}
	set := e.live.Load()
	set.Hostname = "mail2.example.test"
	set.MaxMessageBytes = 12345
	e.live.Store(set)
	// The open connection keeps its settings; the next one has the new.
	rc.send("EHLO a.test")
	if ehlo := strings.Join(rc.reply(), "\n"); !strings.Contains(ehlo, "SIZE 26214400") {
		t.Errorf("open connection changed its SIZE:\n%s", ehlo)
	}
	rc2 := dialRaw(t, e.mx)
	if g := rc2.reply(); !strings.HasPrefix(g[0], "220 mail2.example.test ") {
		t.Fatalf("greeting after the change %q", g)
	}
	rc2.send("EHLO a.test")
	if ehlo := strings.Join(rc2.reply(), "\n"); !strings.Contains(ehlo, "SIZE 12345") {
		t.Errorf("new connection has the old SIZE:\n%s", ehlo)
	}
	c := e.client(e.mx, plain)
	if err := send(c, "x@remote.test", []string{"carol@example.test"}, testMessage("h")); err != nil {
		t.Fatal(err)
	}
	if _, rec, _ := trace(t, e.wantMailbox("example.test", "carol", 1)[0]); rec[3] != "mail2.example.test" {
		t.Errorf("Received by %s, want the new host name", rec[3])
	}
}

func TestForgedAuthResultsRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client(e.mx, plain)
	msg := "Authentication-Results: " + testHost + "; spf=pass smtp.mailfrom=bank.test\r\n" +
		"Authentication-Results: other.test;\r\n\tdkim=pass header.d=remote.test\r\n" +
		"authentication-results : (comment) MX.Example.Test;\r\n dmarc=pass\r\n" +
		"Subject: forged\r\n\r\nAuthentication-Results: " + testHost + "; in the body\r\n"
	if err := send(c, "x@remote.test", []string{"carol@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	_, _, rest := trace(t, e.wantMailbox("example.test", "carol", 1)[0])
	want := "Authentication-Results: other.test;\r\n\tdkim=pass header.d=remote.test\r\n" +
		"Subject: forged\r\n\r\nAuthentication-Results: " + testHost + "; in the body\r\n"
	if rest != want {
		t.Fatalf("delivered\n%q\nwant\n%q", rest, want)
	}
}

func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rc := dialRaw(t, e.mx)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("MAIL FROM:<a@remote.test>", "250 ")
	rc.expect("RCPT TO:<bob@example.test>", "250 ")
	part1, part2 := "Subject: chunks\r\n\r\n", "one\r\n.two\r\n"
	rc.send("BDAT " + strconv.Itoa(len(part1)) + "\r\n" + part1[:len(part1)-2])
	rc.expectReply("250 ")
	rc.send("BDAT " + strconv.Itoa(len(part2)) + " LAST\r\n" + part2[:len(part2)-2])
	rc.expectReply("250 2.0.0 OK id=")
	if _, _, rest := trace(t, e.wantMailbox("example.test", "bob", 1)[0]); rest != part1+part2 {
		t.Fatalf("BDAT message %q, want %q", rest, part1+part2)
	}
	// RSET in the middle of a BDAT transfer drops the message and
	// nothing else.
	rc.expect("MAIL FROM:<a@remote.test>", "250 ")
	rc.expect("RCPT TO:<bob@example.test>", "250 ")
	rc.send("BDAT " + strconv.Itoa(len(part1)) + "\r\n" + part1[:len(part1)-2])
	rc.expectReply("250 ")
	rc.expect("RSET", "250 ")
	time.Sleep(50 * time.Millisecond)
	rc.expect("NOOP", "250 ")
	e.wantMailbox("example.test", "bob", 1)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// nilDirectory is a directory with nothing in it, for tests that need a
// Server and no directory.
type nilDirectory struct{}

func (nilDirectory) Domain(ctx context.Context, name string) (*store.Domain, error) {
	return nil, store.ErrNotFound
}

func (nilDirectory) LookupAddress(ctx context.Context, local, domain string) (*store.Address, error) {
	return nil, store.ErrNotFound
}

func (nilDirectory) MailboxPath(domain, id string) string { return "/nonexistent/" + domain + "/" + id }
