package tests

// The end-to-end tests of mail out (issue 10): mailfountaind pointed at
// a DNS server and remote mail servers on loopback (outside, in
// outbound_helpers_test.go), its users sending through submission.
//
// They assume of the daemon: the flags --resolver ADDR and --remote-port
// N; the document's smtp.mode, smtp.relay {host, port, username,
// password} and smtp.queue {min_backoff, max_backoff, lifetime,
// delay_warning}; the host name of smtp.relay resolved through
// --resolver; the system roots (which SSL_CERT_FILE replaces) to verify
// the smarthost's and the MTA-STS policy host's certificates; `mfapply
// queue list|show ID|hold ID|release ID|retry ID|delete ID` (--json for
// list and show, queue.Info as JSON); `mfapply dkim show DOMAIN` printing
// the TXT records in zone file syntax; delivery reports delivered to the
// sender's mailbox.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dsn/dsntest"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/tlscert/certtest"
)

const (
	// The sender of the tests: his password is hashed at a low cost.
	sender = "andre.mouve"
	// andre-demo hashed at a low cost: andre.mouve's hash in the
	// template, for the accounts of other domains.
	lowCostHash = "$argon2id$v=19$m=8192,t=1,p=1$bWFpbHRlc3QtYW5kcmUtcw$LSVZL4+tu8x28oe24qkIhekrm3bgxU++gR2ZoY5PJAI"
	// How long a delivery or a report may take: the first attempt is at
	// once, retries after 1-2 s; generous for a loaded machine.
	deliveryWait = 30 * time.Second
)

// fastQueue retries after 1 to 2 s, gives up after lifetime, warns of no
// delay.
func fastQueue(lifetime string) *queueOpts {
	return &queueOpts{MinBackoff: "1s", MaxBackoff: "2s", Lifetime: lifetime, DelayWarning: "0"}
}

// sendOut submits a message from the test's sender to rcpts, tagged tag
// (its Subject), and returns it.
func sendOut(t *testing.T, d *mailDaemon, tag string, rcpts ...string) string {
	t.Helper()
	msg := message(addr(sender), rcpts[0], tag, "Bonjour,\nvoici le devis.\n.une ligne qui commence par un point\n")
	submit(t, d.addr("submission"), addr(sender), andrePassword, addr(sender), rcpts, msg)
	return msg
}

// quietFor checks for d that cond stays true (nil): nothing more happens.
func quietFor(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// TestOutboundMXOrder: mail goes to the most preferred MX that answers
// (RFC 5321 5.1, whatever the order of the DNS answer), and to the A
// record of a domain without MX (the implicit MX).
func TestOutboundMXOrder(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	second := w.net.sink(t, sinkOpts{})
	third := w.net.sink(t, sinkOpts{})
	implicit := w.net.sink(t, sinkOpts{})
	w.dns.Add(
		"order.example. MX 30 mx3.order.example.",
		"order.example. MX 10 mx1.order.example.",
		"order.example. MX 20 mx2.order.example.",
		"mx1.order.example. A "+w.net.ip(), // nothing listens: connection refused
		"mx2.order.example. A "+second.ip(),
		"mx3.order.example. A "+third.ip(),
		"noMX.example. A "+implicit.ip(),
	)
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	msg := sendOut(t, d, "mx-order", "bob@order.example")
	sendOut(t, d, "mx-implicit", "carol@nomx.example")

	got := second.waitAccepted(t, 1, deliveryWait)
	if x := got[0]; x.From != addr(sender) || !slices.Equal(x.Rcpts, []string{"bob@order.example"}) || !strings.HasSuffix(string(x.Data), msg) {
		t.Errorf("at the second MX (the first refuses connections):%s", second.describe())
	}
	if n := len(third.connections()); n != 0 {
		t.Errorf("the third MX got %d connections, want none: the second answered", n)
	}
	if x := implicit.waitAccepted(t, 1, deliveryWait)[0]; !slices.Equal(x.Rcpts, []string{"carol@nomx.example"}) {
		t.Errorf("at the implicit MX (A of nomx.example):%s", implicit.describe())
	}
	waitUntil(t, "an empty queue", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 0 {
			return fmt.Errorf("%d messages queued: %+v", len(l), l)
		}
		return nil
	})
	if n := len(d.bounces(t, sender)); n != 0 {
		t.Errorf("%d delivery reports to the sender, want none", n)
	}
}

// TestOutboundNullMX: a domain that publishes a null MX (RFC 7505)
// accepts no mail: refused at once, without a look at its A records.
func TestOutboundNullMX(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	dummy := w.net.sink(t, sinkOpts{})
	w.dns.Add("nullmx.example. MX 0 .", "nullmx.example. A "+dummy.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")

	msg := message(addr(sender), "bob@nullmx.example", "null-mx", "x\n")
	err := submitErr(d.addr("submission"), addr(sender), andrePassword, addr(sender), []string{"bob@nullmx.example"}, msg)
	switch {
	case err != nil && strings.Contains(err.Error(), "RCPT") && regexp.MustCompile(`\b5\d\d\b`).MatchString(err.Error()):
		// Refused at RCPT: as good as a report.
	case err != nil:
		t.Fatalf("submission to a null MX domain: %v, want 250 then a report, or a 5xx at RCPT", err)
	default:
		rep := dsntest.Read(t, d.waitBounces(t, sender, 1, deliveryWait)[0].data)
		if len(rep.Recipients) != 1 || rep.Recipients[0]["Action"] != "failed" || !strings.HasPrefix(rep.Recipients[0]["Status"], "5.") {
			t.Errorf("report on a null MX: %+v, want failed, 5.x.x", rep.Recipients)
		}
	}
	if n := len(dummy.connections()); n != 0 {
		t.Errorf("the A record of a null MX domain got %d connections", n)
	}
	if n := w.dns.QueriesFor("nullmx.example", dns.TypeA) + w.dns.QueriesFor("nullmx.example", dns.TypeAAAA); n != 0 {
		t.Errorf("the A/AAAA records of a null MX domain were asked %d times: no fallback to the implicit MX (RFC 7505 3.)", n)
	}
}

// TestOutboundSTARTTLS: STARTTLS whenever offered, whoever signed the
// certificate (opportunistic TLS: no MTA-STS policy); plain when not
// offered.
func TestOutboundSTARTTLS(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	other := certtest.New(t) // a CA the daemon does not trust
	tlsSink := w.net.sink(t, sinkOpts{TLS: serverTLS(t, other, "wrong-name.test")})
	plainSink := w.net.sink(t, sinkOpts{})
	w.mx(t, "tls.example", tlsSink.ip())
	w.mx(t, "plain.example", plainSink.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "tls", "bob@tls.example")
	sendOut(t, d, "plain", "bob@plain.example")
	if x := tlsSink.waitAccepted(t, 1, deliveryWait)[0]; !x.TLS {
		t.Errorf("STARTTLS offered but the message came in plain:%s", tlsSink.describe())
	}
	if x := plainSink.waitAccepted(t, 1, deliveryWait)[0]; x.TLS {
		t.Errorf("TLS recorded on a sink without STARTTLS:%s", plainSink.describe())
	}
}

// TestOutboundConnectionReuse: a second message to a destination goes
// over the connection of the first, kept open, with the envelope
// pipelined (RFC 2920).
func TestOutboundConnectionReuse(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	w.mx(t, "reuse.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "reuse-1", "bob@reuse.example")
	s.waitAccepted(t, 1, deliveryWait)
	sendOut(t, d, "reuse-2", "carol@reuse.example", "dave@reuse.example")
	got := s.waitAccepted(t, 2, deliveryWait)
	if got[0].Conn != got[1].Conn || len(s.connections()) != 1 {
		t.Errorf("two messages, %d connections (conns %d and %d), want one reused:%s", len(s.connections()), got[0].Conn, got[1].Conn, s.describe())
	}
	if !got[1].Pipelined {
		t.Errorf("the envelope of the second message was not pipelined (the sink offers PIPELINING):%s", s.describe())
	}
	if !slices.Equal(got[1].Rcpts, []string{"carol@reuse.example", "dave@reuse.example"}) {
		t.Errorf("second message's recipients %v, want both in one transaction", got[1].Rcpts)
	}
}

// TestOutboundSlowDestination: a destination that holds its answer does
// not stall the mail to another.
func TestOutboundSlowDestination(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	slow := w.net.sink(t, sinkOpts{})
	fast := w.net.sink(t, sinkOpts{})
	w.mx(t, "slow.example", slow.ip())
	w.mx(t, "fast.example", fast.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	release := slow.holdData()
	defer release(true)
	sendOut(t, d, "slow", "bob@slow.example")
	waitUntil(t, "the slow destination holding the message", deliveryWait, func() error {
		if slow.heldNow() != 1 {
			return fmt.Errorf("not held:%s", slow.describe())
		}
		return nil
	})
	sendOut(t, d, "fast", "bob@fast.example")
	fast.waitAccepted(t, 1, deliveryWait)
	if slow.heldNow() != 1 {
		t.Errorf("the slow destination's answer was meant to be still held")
	}
	release(true)
	slow.waitAccepted(t, 1, deliveryWait)
}

// TestOutboundRetry: 4xx answers are retried after the backoff until
// accepted; the message is delivered once, with no report.
func TestOutboundRetry(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	s.answer("RCPT", "bob@retry.example", "451 4.7.1 greylisted, try again", "450 4.2.0 mailbox busy", "250 2.1.5 ok")
	w.mx(t, "retry.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	msg := sendOut(t, d, "retry", "bob@retry.example")
	x := s.waitAccepted(t, 1, deliveryWait)[0]
	if !strings.HasSuffix(string(x.Data), msg) {
		t.Errorf("the message delivered after retries is not the one sent:\n%s", x.Data)
	}
	if n := s.rcptAttempts("bob@retry.example"); n != 3 {
		t.Errorf("%d attempts, want 3 (two 4xx, then 250):%s", n, s.describe())
	}
	waitUntil(t, "an empty queue", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 0 {
			return fmt.Errorf("%d queued", len(l))
		}
		return nil
	})
	quietFor(t, "after the delivery", 3*time.Second, func() error {
		if n := len(s.accepted()); n != 1 {
			return fmt.Errorf("delivered %d times", n)
		}
		if n := len(d.bounces(t, sender)); n != 0 {
			return fmt.Errorf("%d reports to the sender of a delivered message", n)
		}
		return nil
	})
}

// TestOutboundLifetime: a recipient answered 4xx until the lifetime ends
// is bounced, with the remote server's last answer.
func TestOutboundLifetime(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	s.answer("RCPT", "", "452 4.2.2 mailbox full, try later")
	w.mx(t, "full.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("5s")}, "submission")
	start := time.Now()
	sendOut(t, d, "lifetime", "bob@full.example")
	b := d.waitBounces(t, sender, 1, deliveryWait+5*time.Second)[0]
	if el := time.Since(start); el < 4*time.Second {
		t.Errorf("bounced after %s, before the lifetime of 5s", el)
	}
	rep := dsntest.Read(t, b.data)
	if len(rep.Recipients) != 1 || rep.Recipients[0]["Action"] != "failed" ||
		!strings.Contains(rep.Recipients[0]["Final-Recipient"], "bob@full.example") ||
		!strings.Contains(rep.Recipients[0]["Diagnostic-Code"], "mailbox full, try later") {
		t.Errorf("report at the end of the lifetime: %+v", rep.Recipients)
	}
	if n := s.rcptAttempts("bob@full.example"); n < 2 {
		t.Errorf("%d attempts in the 5s lifetime with a 1-2s backoff, want several", n)
	}
	if n := len(s.accepted()); n != 0 {
		t.Errorf("%d accepted", n)
	}
	waitUntil(t, "an empty queue after the bounce", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 0 {
			return fmt.Errorf("%d queued", len(l))
		}
		return nil
	})
}

// TestOutboundPermanentFailure: a 5xx is bounced at once, never retried;
// python's email package reads the report as a delivery-status report in
// the domain's language (fr), with the remote server's whole answer; the
// other recipient of the same destination is delivered.
func TestOutboundPermanentFailure(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	answer := "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 Please check the address. x1si123 - gsmtp"
	s.answer("RCPT", "nosuch@client.example", answer)
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "five-xx", "nosuch@client.example", "bob@client.example")

	b := d.waitBounces(t, sender, 1, deliveryWait)[0]
	if rp := b.header("Return-Path"); rp != "<>" {
		t.Errorf("report's Return-Path %q, want <> (never a bounce to a bounce)", rp)
	}
	rep := dsntest.Read(t, b.data)
	if rep.ContentType != "multipart/report" || rep.ReportType != "delivery-status" || len(rep.Parts) != 3 ||
		rep.Parts[1] != "message/delivery-status" || len(rep.Defects) != 0 {
		t.Errorf("report's structure: %s report-type=%s parts %v defects %v", rep.ContentType, rep.ReportType, rep.Parts, rep.Defects)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("report on %d recipients, want 1 (nosuch@): %+v", len(rep.Recipients), rep.Recipients)
	}
	r := rep.Recipients[0]
	if !strings.Contains(r["Final-Recipient"], "nosuch@client.example") || r["Action"] != "failed" || r["Status"] != "5.1.1" ||
		!strings.Contains(r["Remote-MTA"], "mx1.client.example") ||
		!strings.Contains(r["Diagnostic-Code"], "does not exist") || !strings.Contains(r["Diagnostic-Code"], "x1si123 - gsmtp") {
		t.Errorf("report's recipient fields %+v, want nosuch@, failed, 5.1.1, mx1.client.example, the whole answer", r)
	}
	if !strings.Contains(rep.Text, "Objet de votre message") || !strings.Contains(rep.Text, "five-xx") {
		t.Errorf("report's text is not the French one (ma-societe.fr's language) naming the subject:\n%s", rep.Text)
	}
	if rep.OrigSubject != "five-xx" && !strings.Contains(rep.Original, "five-xx") {
		t.Errorf("report does not carry the original message or its header: %+v", rep)
	}
	if x := s.waitAccepted(t, 1, deliveryWait)[0]; !slices.Equal(x.Rcpts, []string{"bob@client.example"}) {
		t.Errorf("the other recipient:%s", s.describe())
	}
	quietFor(t, "after the 5xx", 3*time.Second, func() error {
		if n := s.rcptAttempts("nosuch@client.example"); n != 1 {
			return fmt.Errorf("a 5xx recipient tried %d times, want once", n)
		}
		if n := len(d.bounces(t, sender)); n != 1 {
			return fmt.Errorf("%d reports, want 1", n)
		}
		return nil
	})
}

// TestOutboundBounceLanguage: the report is in the language of the
// sender's domain: English for an "en" domain.
func TestOutboundBounceLanguage(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	s.answer("RCPT", "", "550 5.1.1 no such user")
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h"),
		Domains: []extraDomain{{Name: "office.example", Language: "en", Accounts: []extraAccount{{ID: "jane", PasswordHash: lowCostHash}}}}},
		"submission")
	submit(t, d.addr("submission"), "jane@office.example", andrePassword, "jane@office.example", []string{"nosuch@client.example"},
		message("jane@office.example", "nosuch@client.example", "in-english", "Hello\n"))
	jane := filepath.Join(d.data, "mail", "office.example", "jane")
	var rep dsntest.Report
	waitUntil(t, "a report in jane@office.example's inbox", deliveryWait, func() error {
		for _, m := range folderMessages(t, jane, "") {
			if strings.HasPrefix(m.header("Content-Type"), "multipart/report") {
				rep = dsntest.Read(t, m.data)
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	if !strings.Contains(rep.Text, "Subject of your message: in-english") || strings.Contains(rep.Text, "Objet de votre message") {
		t.Errorf("the report to an \"en\" domain's sender is not in English:\n%s", rep.Text)
	}
	if !strings.Contains(rep.From, "postmaster@office.example") {
		t.Errorf("report From %q, want postmaster of the sender's domain", rep.From)
	}
}

// TestOutboundDelayWarning: after delay_warning the sender gets one
// "delayed" report; the message stays queued.
func TestOutboundDelayWarning(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	s.answer("RCPT", "", "451 4.3.0 temporary local problem")
	w.mx(t, "slow.example", s.ip())
	q := fastQueue("1h")
	q.DelayWarning = "3s"
	d := w.daemon(t, stateOpts{Queue: q}, "submission")
	sendOut(t, d, "delay", "bob@slow.example")
	rep := dsntest.Read(t, d.waitBounces(t, sender, 1, deliveryWait)[0].data)
	if len(rep.Recipients) != 1 || rep.Recipients[0]["Action"] != "delayed" || !strings.Contains(rep.Recipients[0]["Diagnostic-Code"], "temporary local problem") {
		t.Errorf("delay warning: %+v, want Action delayed with the last answer", rep.Recipients)
	}
	quietFor(t, "after the warning", 4*time.Second, func() error {
		if n := len(d.bounces(t, sender)); n != 1 {
			return fmt.Errorf("%d reports, want the one warning", n)
		}
		return nil
	})
	if l := d.queueList(t); len(l) != 1 || l[0].Recipients[0].Status != "pending" {
		t.Errorf("queue after the warning: %+v, want the message still pending", l)
	}
}

// relaySink runs the smarthost of the tests: smtp.isp.example, STARTTLS
// with a certificate of w's CA (which the daemon trusts through
// SSL_CERT_FILE), AUTH required.
func relaySink(t *testing.T, w *outside) (*sink, *relayOpts) {
	t.Helper()
	ip := w.net.ip()
	s := startSink(t, ip, w.net.port, sinkOpts{Hostname: "smtp.isp.example", TLS: serverTLS(t, w.ca, "smtp.isp.example"),
		Auth: map[string]string{"box@isp.example": "relay-pass"}})
	w.dns.Add("smtp.isp.example. A " + ip)
	return s, &relayOpts{Host: "smtp.isp.example", Port: w.net.port, Username: "box@isp.example", Password: "relay-pass"}
}

// TestOutboundRelay: smtp.mode relay sends everything through the
// smarthost, over verified TLS, with AUTH.
func TestOutboundRelay(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	relay, ro := relaySink(t, w)
	mx := w.net.sink(t, sinkOpts{})
	w.mx(t, "client.example", mx.ip())
	d := w.daemon(t, stateOpts{Mode: "relay", Relay: ro, Queue: fastQueue("1h")}, "submission")
	msg := sendOut(t, d, "relayed", "bob@client.example", "carol@other.example")
	relay.waitAccepted(t, 1, deliveryWait)
	waitUntil(t, "both recipients at the smarthost", deliveryWait, func() error {
		var rcpts []string
		for _, x := range relay.accepted() {
			rcpts = append(rcpts, x.Rcpts...)
		}
		slices.Sort(rcpts)
		if !slices.Equal(rcpts, []string{"bob@client.example", "carol@other.example"}) {
			return fmt.Errorf("recipients %v", rcpts)
		}
		return nil
	})
	for _, x := range relay.accepted() {
		if !x.TLS || x.AuthUser != "box@isp.example" || x.From != addr(sender) || !strings.HasSuffix(string(x.Data), msg) {
			t.Errorf("at the smarthost, want TLS, AUTH box@isp.example, the message:%s", relay.describe())
		}
	}
	if n := len(mx.connections()); n != 0 {
		t.Errorf("relay mode, yet the destination's MX got %d connections", n)
	}
}

// TestOutboundRelayRefusesUntrusted: in relay mode the smarthost's
// certificate is verified: one of a CA the daemon does not trust gets
// nothing, and the message waits.
func TestOutboundRelayRefusesUntrusted(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	other := certtest.New(t)
	ip := w.net.ip()
	relay := startSink(t, ip, w.net.port, sinkOpts{Hostname: "smtp.isp.example", TLS: serverTLS(t, other, "smtp.isp.example"),
		Auth: map[string]string{"box@isp.example": "relay-pass"}})
	w.dns.Add("smtp.isp.example. A " + ip)
	ro := &relayOpts{Host: "smtp.isp.example", Port: w.net.port, Username: "box@isp.example", Password: "relay-pass"}
	d := w.daemon(t, stateOpts{Mode: "relay", Relay: ro, Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "untrusted", "bob@client.example")
	waitUntil(t, "a failed attempt recorded in the queue", deliveryWait, func() error {
		l := d.queueList(t)
		if len(l) != 1 || l[0].Recipients[0].Attempts < 1 {
			return fmt.Errorf("queue %+v", l)
		}
		return nil
	})
	if got := relay.transactions(); len(got) != 0 {
		t.Errorf("a smarthost with an untrusted certificate got transactions:%s", relay.describe())
	}
}

// TestOutboundBlockedToRelay: in direct mode, a destination that refuses
// the box's address (a block list) gets the message through the
// smarthost; `mfapply queue show` and the log say so.
func TestOutboundBlockedToRelay(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	relay, ro := relaySink(t, w)
	mx := w.net.sink(t, sinkOpts{})
	block := "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
	mx.answer("RCPT", "", block)
	w.mx(t, "strict.example", mx.ip())
	d := w.daemon(t, stateOpts{Mode: "direct", Relay: ro, Queue: fastQueue("1h")}, "submission")
	release := relay.holdData()
	defer release(true)
	sendOut(t, d, "blocked", "bob@strict.example")
	waitUntil(t, "the message at the smarthost", deliveryWait, func() error {
		if relay.heldNow() != 1 {
			return fmt.Errorf("not yet; MX:%s", mx.describe())
		}
		return nil
	})
	l := d.queueList(t)
	if len(l) != 1 {
		t.Fatalf("queue while the smarthost holds the message: %+v, want it", l)
	}
	info := d.queueShow(t, l[0].ID)
	if r := info.Recipients; len(r) != 1 || !r[0].ViaRelay || !strings.Contains(r[0].LastError, "zen.spamhaus.org") {
		t.Errorf("mfapply queue show %s: %+v, want the recipient via the smarthost after the block answer", l[0].ID, info)
	}
	release(true)
	x := relay.waitAccepted(t, 1, deliveryWait)[0]
	if !x.TLS || x.AuthUser != "box@isp.example" || !slices.Equal(x.Rcpts, []string{"bob@strict.example"}) {
		t.Errorf("at the smarthost:%s", relay.describe())
	}
	if n := len(d.bounces(t, sender)); n != 0 {
		t.Errorf("%d reports to the sender of a message delivered through the smarthost", n)
	}
	if log := d.proc.stderr.String(); !strings.Contains(log, "zen.spamhaus.org") {
		t.Errorf("the log does not tell of the block answer")
	}
}

var srsRE = regexp.MustCompile(`(?i)^SRS0=[^=]+=[^=]+=sender\.example=alice@(mail\.)?ma-societe\.fr$`)

// TestOutboundSRS: a redirection to an outside address forwards with the
// sender rewritten by SRS; a bounce to the SRS address, received on the
// MX, reaches the original sender; a forged SRS address is refused.
func TestOutboundSRS(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	partner := w.net.sink(t, sinkOpts{})
	origin := w.net.sink(t, sinkOpts{})
	w.mx(t, "client.example", partner.ip())
	w.mx(t, "sender.example", origin.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h"),
		Redirections: []redirection{{Address: "partenaire", To: []string{"contact@client.example", "rene.ricard"}}}}, "smtp")

	msg := message("alice@sender.example", addr("partenaire"), "srs", "Bonjour\n")
	sendMX(t, d.addr("smtp"), "alice@sender.example", []string{addr("partenaire")}, msg)
	if n := len(withHeader(d.inbox(t, "rene.ricard"), "Subject", "srs")); n != 1 {
		t.Errorf("the local target of the redirection has %d copies, want 1", n)
	}
	x := partner.waitAccepted(t, 1, deliveryWait)[0]
	if !srsRE.MatchString(x.From) || !slices.Equal(x.Rcpts, []string{"contact@client.example"}) || !strings.HasSuffix(string(x.Data), msg) {
		t.Fatalf("forwarded: MAIL FROM:<%s> to %v, want SRS0=…=sender.example=alice@ the box's domain:%s", x.From, x.Rcpts, partner.describe())
	}

	// The partner's server bounces to the SRS address.
	bounce := "From: MAILER-DAEMON@client.example\r\nTo: <" + x.From + ">\r\nSubject: Undelivered Mail\r\n" +
		"Auto-Submitted: auto-replied\r\nMessage-ID: <srs-bounce@client.example>\r\n\r\ncontact@client.example: mailbox full\r\n"
	sendMX(t, d.addr("smtp"), "", []string{x.From}, bounce)
	y := origin.waitAccepted(t, 1, deliveryWait)[0]
	if y.From != "" || !slices.Equal(y.Rcpts, []string{"alice@sender.example"}) || !strings.Contains(string(y.Data), "srs-bounce@client.example") {
		t.Errorf("the bounce at the original sender's MX: MAIL FROM:<%s> to %v, want <> to alice@sender.example:%s", y.From, y.Rcpts, origin.describe())
	}

	// A forged address: the hash of another one.
	parts := strings.SplitN(x.From, "=", 3)
	fake := strings.Repeat("A", len(parts[1]))
	if strings.EqualFold(fake, parts[1]) { // the hash is compared without case
		fake = strings.Repeat("B", len(parts[1]))
	}
	forged := parts[0] + "=" + fake + "=" + parts[2]
	if err := sendPlain(d.addr("smtp"), "", []string{forged}, bounce); err == nil || !strings.Contains(err.Error(), "RCPT") {
		t.Errorf("a bounce to a forged SRS address %s: %v, want refused at RCPT", forged, err)
	}
	quietFor(t, "after the forged bounce", 2*time.Second, func() error {
		if n := len(origin.accepted()); n != 1 {
			return fmt.Errorf("the original sender's MX got %d messages, want 1", n)
		}
		return nil
	})
}

// TestOutboundDKIM: outgoing mail of the box's domain carries an ed25519
// and an RSA signature that Debian's python3-dkim verifies against the
// records `mfapply dkim show` prints.
func TestOutboundDKIM(t *testing.T) {
	t.Parallel()
	debianPython(t, "dkim", "nacl")
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "dkim", "bob@client.example")
	x := s.waitAccepted(t, 1, deliveryWait)[0]

	code, out, errOut := mfapply(t, "", "--data", d.data, "dkim", "show", domain)
	if code != 0 {
		t.Fatalf("mfapply dkim show %s: exit %d\n%s%s", domain, code, out, errOut)
	}
	if n := publishTXT(t, w.dns, out); n < 2 {
		t.Fatalf("mfapply dkim show printed %d TXT records, want 2 (ed25519, rsa):\n%s", n, out)
	}
	for name := range w.dns.txts() {
		if !strings.HasSuffix(name, "._domainkey."+domain) {
			t.Errorf("record %s is not of %s's _domainkey", name, domain)
		}
	}
	res := dkimVerify(t, x.Data, w.dns.txts())
	var algs []string
	for _, r := range res {
		if !r.OK {
			t.Errorf("dkimpy: signature %+v does not verify", r)
		}
		algs = append(algs, r.A)
	}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ed25519-sha256", "rsa-sha256"}) {
		t.Errorf("signatures %v, want ed25519-sha256 and rsa-sha256:\n%s", algs, x.Data)
	}
}

// TestOutboundKill: kill -9 while the remote server has the message but
// has not answered DATA; after a restart the message is sent again and
// accepted once; another kill and restart sends nothing more.
func TestOutboundKill(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	release := s.holdData()
	defer release(false)
	msg := sendOut(t, d, "kill", "bob@client.example")
	waitUntil(t, "the message held at the end of DATA", deliveryWait, func() error {
		if s.heldNow() != 1 {
			return fmt.Errorf("not held:%s", s.describe())
		}
		return nil
	})
	d.kill(t)
	release(false) // the connection closes unanswered
	d.start(t)
	x := s.waitAccepted(t, 1, deliveryWait)[0]
	if !strings.HasSuffix(string(x.Data), msg) {
		t.Errorf("the message sent after the restart is not the one submitted:\n%s", x.Data)
	}
	waitUntil(t, "an empty queue", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 0 {
			return fmt.Errorf("%d queued", len(l))
		}
		return nil
	})
	d.kill(t)
	d.start(t)
	quietFor(t, "after a second kill and restart", 4*time.Second, func() error {
		if n := len(s.accepted()); n != 1 {
			return fmt.Errorf("delivered %d times, want once", n)
		}
		if n := len(d.bounces(t, sender)); n != 0 {
			return fmt.Errorf("%d reports", n)
		}
		return nil
	})
	withData := 0
	for _, x := range s.transactions() {
		if x.Data != nil {
			withData++
		}
	}
	if withData != 2 {
		t.Errorf("%d transactions reached the end of DATA, want 2 (the one cut by the kill, the one accepted):%s", withData, s.describe())
	}
}

// TestOutboundSwaksMixed: swaks sends, through submission, to a local
// and an outside recipient in one transaction: the local one has it at
// once, the outside one at its MX.
func TestOutboundSwaksMixed(t *testing.T) {
	t.Parallel()
	swaks := needTool(t, "swaks")
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	host, port, _ := net.SplitHostPort(d.addr("submission"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, swaks, "--server", host, "--port", port, "-tls",
		"--auth", "PLAIN", "--auth-user", addr(sender), "--auth-password", andrePassword,
		"--from", addr(sender), "--to", addr("thomas.petit")+",bob@client.example",
		"--header", "Subject: swaks-mixed", "--body", "one local, one outside").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if n := len(withHeader(d.inbox(t, "thomas.petit"), "Subject", "swaks-mixed")); n != 1 {
		t.Errorf("the local recipient has %d copies, want 1 at once", n)
	}
	x := s.waitAccepted(t, 1, deliveryWait)[0]
	if x.From != addr(sender) || !slices.Equal(x.Rcpts, []string{"bob@client.example"}) || !strings.Contains(string(x.Data), "one local, one outside") {
		t.Errorf("at the outside MX, want only bob@client.example:%s", s.describe())
	}
}

// TestOutboundQueueAdmin: `mfapply queue` on a deferred message: list
// and show (--json), hold (no attempt while held), release, retry (an
// attempt now despite a long backoff), delete (never sent).
func TestOutboundQueueAdmin(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	s := w.net.sink(t, sinkOpts{})
	s.answer("RCPT", "", "451 4.7.1 greylisted, try again later")
	w.mx(t, "client.example", s.ip())
	d := w.daemon(t, stateOpts{Queue: &queueOpts{MinBackoff: "1h", MaxBackoff: "2h", Lifetime: "5d", DelayWarning: "0"}}, "submission")
	sendOut(t, d, "admin", "bob@client.example")

	var info queue.Info
	waitUntil(t, "the first attempt in the queue", deliveryWait, func() error {
		l := d.queueList(t)
		if len(l) != 1 || len(l[0].Recipients) != 1 || l[0].Recipients[0].Attempts != 1 {
			return fmt.Errorf("queue %+v", l)
		}
		info = l[0]
		return nil
	})
	r := info.Recipients[0]
	if info.From != addr(sender) || info.State != queue.Waiting || info.Size <= 0 || info.Created.IsZero() ||
		r.Addr != "bob@client.example" || r.Status != "pending" || !strings.Contains(r.LastError, "greylisted") ||
		info.Next.Before(time.Now().Add(10*time.Minute)) {
		t.Errorf("queue list: %+v, want from %s, waiting, next in about 1h (min_backoff, jittered), bob@ pending after the 451", info, addr(sender))
	}
	if got := d.queueShow(t, info.ID); got.ID != info.ID || got.From != info.From || len(got.Recipients) != 1 {
		t.Errorf("queue show %s: %+v", info.ID, got)
	}
	run := func(args ...string) {
		t.Helper()
		if code, out, errOut := d.queueCmd(t, args...); code != 0 {
			t.Fatalf("mfapply queue %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	run("hold", info.ID)
	if got := d.queueShow(t, info.ID); got.State != queue.Held {
		t.Errorf("after hold: state %q, want held", got.State)
	}
	if code, _, errOut := d.queueCmd(t, "retry", info.ID); code == 0 || !strings.Contains(errOut, "held") {
		t.Errorf("mfapply queue retry of a held message: exit %d %s, want a refusal saying it is held", code, errOut)
	}
	quietFor(t, "while held", 3*time.Second, func() error {
		if n := s.rcptAttempts("bob@client.example"); n != 1 {
			return fmt.Errorf("%d attempts on a held message, want still 1", n)
		}
		return nil
	})
	run("release", info.ID)
	if got := d.queueShow(t, info.ID); got.State != queue.Waiting {
		t.Errorf("after release: state %q, want waiting", got.State)
	}
	// Released, it is due at once.
	waitUntil(t, "an attempt after release", deliveryWait, func() error {
		if n := s.rcptAttempts("bob@client.example"); n < 2 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	waitUntil(t, "the message deferred again", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 1 || l[0].Recipients[0].Attempts != 2 || l[0].Next.Before(time.Now().Add(10*time.Minute)) {
			return fmt.Errorf("queue %+v", l)
		}
		return nil
	})
	run("retry", info.ID)
	waitUntil(t, "an attempt after retry", deliveryWait, func() error {
		if n := s.rcptAttempts("bob@client.example"); n < 3 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	waitUntil(t, "the message deferred after the retry", deliveryWait, func() error {
		if l := d.queueList(t); len(l) != 1 || l[0].Recipients[0].Attempts != 3 {
			return fmt.Errorf("queue %+v", l)
		}
		return nil
	})
	s.answer("RCPT", "", "250 2.1.5 ok")
	run("delete", info.ID)
	if l := d.queueList(t); len(l) != 0 {
		t.Errorf("queue after delete: %+v, want empty", l)
	}
	if code, _, _ := d.queueCmd(t, "show", info.ID, "--json"); code == 0 {
		t.Errorf("mfapply queue show of a deleted message: exit 0")
	}
	for _, cmd := range []string{"show", "hold", "release", "retry", "delete"} {
		if code, out, errOut := d.queueCmd(t, cmd, "nosuchid"); code == 0 || !strings.Contains(strings.ToLower(out+errOut), "nosuchid") {
			t.Errorf("mfapply queue %s nosuchid: exit %d, want a failure naming the id:\n%s%s", cmd, code, out, errOut)
		}
	}
	quietFor(t, "after delete", 3*time.Second, func() error {
		if n := len(s.accepted()); n != 0 {
			return fmt.Errorf("a deleted message was delivered")
		}
		return nil
	})
}

// TestOutboundPostfixSink: Postfix's smtp-sink as the remote servers,
// its options scripting the answers: accepted, 4xx (deferred), 5xx
// (bounced with its answer).
func TestOutboundPostfixSink(t *testing.T) {
	t.Parallel()
	needTool(t, "smtp-sink")
	w := newOutside(t)
	ok := startPostfixSink(t, w.net.ip(), w.net.port)
	soft := startPostfixSink(t, w.net.ip(), w.net.port, "-r", "RCPT", "-b", "452 4.2.2 mailbox over quota here")
	hard := startPostfixSink(t, w.net.ip(), w.net.port, "-f", "RCPT", "-B", "550 5.1.1 no such user in smtp-sink")
	for name, p := range map[string]*postfixSink{"ok.example": ok, "soft.example": soft, "hard.example": hard} {
		h, _, _ := net.SplitHostPort(p.addr)
		w.mx(t, name, h)
	}
	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "postfix-sink", "bob@ok.example", "bob@soft.example", "bob@hard.example")
	waitUntil(t, "the message at the accepting smtp-sink", deliveryWait, func() error {
		if ms := ok.messages(t); len(ms) != 1 || !strings.Contains(ms[0], "postfix-sink") {
			return fmt.Errorf("dumps %q", ms)
		}
		return nil
	})
	rep := dsntest.Read(t, d.waitBounces(t, sender, 1, deliveryWait)[0].data)
	if len(rep.Recipients) != 1 || !strings.Contains(rep.Recipients[0]["Final-Recipient"], "bob@hard.example") ||
		!strings.Contains(rep.Recipients[0]["Diagnostic-Code"], "no such user in smtp-sink") {
		t.Errorf("report: %+v, want bob@hard.example with smtp-sink's answer", rep.Recipients)
	}
	waitUntil(t, "the 4xx recipient pending in the queue", deliveryWait, func() error {
		l := d.queueList(t)
		if len(l) != 1 {
			return fmt.Errorf("queue %+v", l)
		}
		for _, r := range l[0].Recipients {
			if r.Addr == "bob@soft.example" && r.Status == "pending" && strings.Contains(r.LastError, "over quota here") {
				return nil
			}
		}
		return fmt.Errorf("queue %+v", l)
	})
}

// mtaSTSServer serves policy as https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// on port 443 of an address of its own, with a certificate of w's CA, and
// publishes its A record and _mta-sts TXT record.
func mtaSTSServer(t *testing.T, w *outside, domain, policy string) {
	t.Helper()
	host := "mta-sts." + domain
	// Port 443 is the same for every test: an address of its own, at random
	// in 127.0.0.0/8, keeps parallel runs apart.
	var ln net.Listener
	var err error
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(150), rand.IntN(250), 2+rand.IntN(250))
		if ln, err = net.Listen("tcp", net.JoinHostPort(ip, "443")); err == nil {
			break
		}
	}
	if err != nil {
		t.Skipf("no loopback address free on port 443 (not root?): %v", err)
	}
	srv := &http.Server{TLSConfig: serverTLS(t, w.ca, host), Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != host {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, policy)
	})}
	done := make(chan struct{})
	go func() { srv.ServeTLS(ln, "", ""); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	h, _, _ := net.SplitHostPort(ln.Addr().String())
	w.dns.Add(host+". A "+h, `_mta-sts.`+domain+`. TXT "v=STSv1; id=20261204T000000;"`)
}

// TestOutboundMTASTS: under an enforce policy (RFC 8461), an MX the
// policy does not list gets nothing, even with valid TLS; a listed one
// with a valid certificate gets the message; a domain whose only MX is
// outside its policy keeps the message queued.
func TestOutboundMTASTS(t *testing.T) {
	t.Parallel()
	w := newOutside(t)
	unlisted := w.net.sink(t, sinkOpts{TLS: serverTLS(t, w.ca, "mx1.sts.example")})
	listed := w.net.sink(t, sinkOpts{TLS: serverTLS(t, w.ca, "mx2.sts.example")})
	w.mx(t, "sts.example", unlisted.ip(), listed.ip())
	mtaSTSServer(t, w, "sts.example", "version: STSv1\r\nmode: enforce\r\nmx: mx2.sts.example\r\nmax_age: 86400\r\n")
	only := w.net.sink(t, sinkOpts{TLS: serverTLS(t, w.ca, "mx1.strict-sts.example")})
	w.mx(t, "strict-sts.example", only.ip())
	mtaSTSServer(t, w, "strict-sts.example", "version: STSv1\r\nmode: enforce\r\nmx: mail.elsewhere.example\r\nmax_age: 86400\r\n")

	d := w.daemon(t, stateOpts{Queue: fastQueue("1h")}, "submission")
	sendOut(t, d, "sts", "bob@sts.example")
	sendOut(t, d, "sts-strict", "bob@strict-sts.example")
	if x := listed.waitAccepted(t, 1, deliveryWait)[0]; !x.TLS {
		t.Errorf("the listed MX got the message without TLS:%s", listed.describe())
	}
	waitUntil(t, "a refused attempt for strict-sts.example", deliveryWait, func() error {
		for _, i := range d.queueList(t) {
			for _, r := range i.Recipients {
				if r.Addr == "bob@strict-sts.example" && r.Attempts >= 1 && strings.Contains(strings.ToLower(r.LastError), "mta-sts") {
					return nil
				}
			}
		}
		return fmt.Errorf("queue %+v", d.queueList(t))
	})
	for name, s := range map[string]*sink{"mx1.sts.example": unlisted, "mx1.strict-sts.example": only} {
		if got := s.accepted(); len(got) != 0 {
			t.Errorf("%s, outside the enforced policy, got messages:%s", name, s.describe())
		}
	}
}
