package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestMailMX: mail from the Internet, with python's smtplib on the MX
// port: accounts, aliases, redirections, what is refused and how.
func TestMailMX(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp")
	p := startPy(t, d)
	p.connect("a", "smtp")
	if code, msg := p.call("a", "ehlo", "mx.sender.example").reply(); code != 250 {
		t.Fatalf("EHLO: %d %s", code, msg)
	}
	var features map[string]string
	json.Unmarshal(p.attr("a", "esmtp_features").Value, &features)
	if _, ok := features["starttls"]; !ok {
		t.Errorf("the MX does not offer STARTTLS: EHLO features %v", features)
	}
	if features["size"] != "26214400" {
		t.Errorf("EHLO SIZE %q, want 26214400 (25 MB, the default smtp.max_message_mb)", features["size"])
	}

	const sender = "alice@sender.example"
	body := "Bonjour,\n.hidden line: a leading dot, dot-stuffed on the wire\n..two dots\nfin\n"
	type rcpt struct {
		to       string
		wantCode int    // exact code, or 0 with wantClass
		want     string // in the reply text
	}
	tests := []struct {
		name   string
		from   string
		rcpts  []rcpt
		wantIn map[string]int // account → copies of the message
	}{
		{"account", sender, []rcpt{{to: addr("rene.ricard"), wantCode: 250}},
			map[string]int{"rene.ricard": 1}},
		{"alias in other case", sender, []rcpt{{to: "Direction@MA-Societe.fr", wantCode: 250}},
			map[string]int{"rene.ricard": 1}},
		{"redirection", sender, []rcpt{{to: addr("support"), wantCode: 250}},
			map[string]int{"andre.mouve": 1, "charline.durand": 1, "thomas.petit": 1}},
		// One copy per mailbox however many of its addresses are named.
		{"same mailbox thrice", sender, []rcpt{{to: addr("rene.ricard"), wantCode: 250}, {to: addr("direction"), wantCode: 250}, {to: addr("info"), wantCode: 250}},
			map[string]int{"rene.ricard": 1, "charline.durand": 1}},
		{"null sender", "", []rcpt{{to: addr("thomas"), wantCode: 250}},
			map[string]int{"thomas.petit": 1}},
		{"refused recipients", sender, []rcpt{
			{to: addr("nosuch"), wantCode: 550, want: "5.1.1"},
			{to: addr("newsletter"), wantCode: 451},
			{to: "someone@example.com", wantCode: 5}, // relaying: any 5xx
			{to: "rene.ricard@other.example", wantCode: 5},
			{to: addr("contact"), wantCode: 250},
		}, map[string]int{"charline.durand": 1}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.t = t // p's failures are this subtest's
			tag := fmt.Sprintf("mx-%d", i)
			if code, msg := p.call("a", "mail", tt.from).reply(); code != 250 {
				t.Fatalf("MAIL FROM:<%s>: %d %s, want 250", tt.from, code, msg)
			}
			for _, r := range tt.rcpts {
				code, msg := p.call("a", "rcpt", r.to).reply()
				ok := code == r.wantCode
				if r.wantCode < 10 {
					ok = code/100 == r.wantCode
				}
				if !ok || !strings.Contains(msg, r.want) {
					t.Errorf("RCPT TO:<%s>: %d %s, want %d %s", r.to, code, msg, r.wantCode, r.want)
				}
			}
			msg := message(tt.from, tt.rcpts[0].to, tag, body)
			if code, reply := p.call("a", "data", msg).reply(); code != 250 {
				t.Fatalf("DATA: %d %s, want 250", code, reply)
			}
			// Delivered before the 250: no waiting.
			for _, id := range []string{"rene.ricard", "andre.mouve", "charline.durand", "thomas.petit", "abuse", "postmaster"} {
				got := withHeader(d.inbox(t, id), "Subject", tag)
				if len(got) != tt.wantIn[id] {
					t.Errorf("%s has %d copies of the message, want %d", id, len(got), tt.wantIn[id])
				}
				for _, s := range got {
					checkDelivered(t, s, tt.from, msg)
				}
			}
		})
	}
	p.t = t
	if code, msg := p.call("a", "quit").reply(); code != 221 {
		t.Errorf("QUIT: %d %s", code, msg)
	}
}

// checkDelivered checks a delivered file: the message as sent, after
// the trace headers the box adds.
func checkDelivered(t *testing.T, s stored, from, sent string) {
	t.Helper()
	if !bytes.HasSuffix(s.data, []byte(sent)) {
		t.Errorf("%s does not end with the message as sent:\n%s", s.path, s.data)
		return
	}
	trace := string(s.data[:len(s.data)-len(sent)])
	if !strings.HasPrefix(trace, "Return-Path: <"+from+">\r\n") {
		t.Errorf("%s: does not start with Return-Path: <%s>:\n%s", s.path, from, trace)
	}
	if !strings.Contains(trace, "\r\nReceived: from ") || !strings.Contains(trace, "by mail.ma-societe.fr") {
		t.Errorf("%s: no Received header by mail.ma-societe.fr:\n%s", s.path, trace)
	}
	if strings.Contains(strings.ReplaceAll(string(s.data), "\r\n", ""), "\n") {
		t.Errorf("%s: a bare LF; messages are stored with CRLF", s.path)
	}
}

// encryptionRequired reports whether an AUTH was refused for want of TLS:
// 538 5.7.11 (RFC 4954, section 6) or 530 5.7.0.
func encryptionRequired(r pyResult) bool {
	return !r.OK && (r.Code == 538 && strings.HasPrefix(r.Msg, "5.7.11") || r.Code == 530 && strings.HasPrefix(r.Msg, "5.7.0"))
}

// TestMailSubmission: mail from the users' clients, with smtplib on the
// submission ports: STARTTLS and implicit TLS, AUTH PLAIN and LOGIN, the
// senders a user may use, local delivery at once, remote mail deferred.
func TestMailSubmission(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{LegacyPlainAuth: false}, "submission", "submissions")
	p := startPy(t, d)

	// Port 587 before STARTTLS: no AUTH offered, none accepted, no mail.
	p.connect("a", "submission")
	p.call("a", "ehlo", "laptop")
	if r := p.call("a", "has_extn", "auth"); string(r.Value) != "false" {
		t.Errorf("AUTH offered before STARTTLS with legacy_plain_auth false: %s", r)
	}
	if r := p.call("a", "has_extn", "starttls"); string(r.Value) != "true" {
		t.Errorf("STARTTLS not offered on submission: %s", r)
	}
	if r := p.smtpAuth("a", "PLAIN", addr("rene.ricard"), renePassword); !encryptionRequired(r) {
		t.Errorf("AUTH PLAIN without TLS: %s (code %d), want 538 5.7.11 or 530 5.7.0 (encryption required)", r, r.Code)
	}
	if code, msg := p.call("a", "mail", addr("rene.ricard")).reply(); code != 530 {
		t.Errorf("MAIL FROM without AUTH: %d %s, want 530 (authentication required)", code, msg)
	}
	p.call("a", "rset")

	// STARTTLS, then AUTH PLAIN with the full address.
	if code, msg := p.starttls("a").reply(); code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	p.call("a", "ehlo", "laptop")
	var features map[string]string
	json.Unmarshal(p.attr("a", "esmtp_features").Value, &features)
	for _, m := range []string{"PLAIN", "LOGIN"} {
		if !strings.Contains(" "+features["auth"]+" ", " "+m+" ") {
			t.Errorf("AUTH %q after STARTTLS does not offer %s", features["auth"], m)
		}
	}
	if code, msg := p.call("a", "mail", addr("rene.ricard")).reply(); code != 530 {
		t.Errorf("MAIL FROM over TLS without AUTH: %d %s, want 530", code, msg)
	}
	p.call("a", "rset")
	if code, msg := p.smtpAuth("a", "PLAIN", addr("rene.ricard"), renePassword).reply(); code != 235 {
		t.Fatalf("AUTH PLAIN rene.ricard over STARTTLS: %d %s, want 235", code, msg)
	}
	send := func(c, from string, rcpts []string, wantRcpt []int, tag string) {
		t.Helper()
		if code, msg := p.call(c, "mail", from).reply(); code != 250 {
			t.Errorf("%s: MAIL FROM:<%s>: %d %s, want 250", tag, from, code, msg)
			p.call(c, "rset")
			return
		}
		for i, r := range rcpts {
			if code, msg := p.call(c, "rcpt", r).reply(); code != wantRcpt[i] {
				t.Errorf("%s: RCPT TO:<%s>: %d %s, want %d", tag, r, code, msg, wantRcpt[i])
			}
		}
		if code, msg := p.call(c, "data", message(from, rcpts[0], tag, "Salut\n")).reply(); code != 250 {
			t.Errorf("%s: DATA: %d %s, want 250", tag, code, msg)
		}
	}
	delivered := func(id, tag, from string) {
		t.Helper()
		got := withHeader(d.inbox(t, id), "Subject", tag)
		if len(got) != 1 {
			t.Errorf("%s: %d copies in %s, want 1 (delivered before the 250)", tag, len(got), id)
			return
		}
		if rp := got[0].header("Return-Path"); !strings.EqualFold(rp, "<"+from+">") {
			t.Errorf("%s: Return-Path %q, want <%s>", tag, rp, from)
		}
	}
	send("a", addr("rene.ricard"), []string{addr("andre.mouve")}, []int{250}, "sub-plain")
	delivered("andre.mouve", "sub-plain", addr("rene.ricard"))

	// A sender the user does not own; one of his aliases, to a mailbox
	// and outside (the outbound queue) at once.
	if code, msg := p.call("a", "mail", addr("andre.mouve")).reply(); code != 553 {
		t.Errorf("rene sending as andre.mouve: MAIL FROM: %d %s, want 553", code, msg)
	}
	p.call("a", "rset")
	send("a", "Direction@ma-societe.fr", []string{"client@example.com", addr("charline")}, []int{250, 250}, "sub-alias")
	delivered("charline.durand", "sub-alias", "Direction@ma-societe.fr")
	p.call("a", "quit")

	// AUTH LOGIN over STARTTLS.
	p.connect("b", "submission")
	p.starttls("b")
	p.call("b", "ehlo", "laptop")
	if code, msg := p.smtpAuth("b", "LOGIN", addr("andre.mouve"), andrePassword).reply(); code != 235 {
		t.Fatalf("AUTH LOGIN andre.mouve: %d %s, want 235", code, msg)
	}
	send("b", addr("andre"), []string{addr("thomas.petit")}, []int{250}, "sub-login")
	delivered("thomas.petit", "sub-login", addr("andre"))
	p.call("b", "quit")

	// Port 465, implicit TLS: wrong password, bare local part, then right.
	p.connect("c", "submissions")
	p.call("c", "ehlo", "laptop")
	for _, bad := range []struct{ user, pw string }{
		{addr("charline.durand"), "not-her-password"},
		{"charline.durand", charlinePassword}, // the full address is the login
		{addr("nosuch"), charlinePassword},
	} {
		if r := p.smtpAuth("c", "PLAIN", bad.user, bad.pw); r.OK || r.Code != 535 {
			t.Errorf("AUTH PLAIN %s/%s: %s (code %d), want 535", bad.user, bad.pw, r, r.Code)
		}
	}
	if code, msg := p.smtpAuth("c", "PLAIN", addr("charline.durand"), charlinePassword).reply(); code != 235 {
		t.Fatalf("AUTH PLAIN charline.durand on submissions: %d %s, want 235", code, msg)
	}
	send("c", addr("charline.durand"), []string{addr("rene"), addr("support")}, []int{250, 250}, "sub-tls")
	for _, id := range []string{"rene.ricard", "andre.mouve", "charline.durand", "thomas.petit"} {
		delivered(id, "sub-tls", addr("charline.durand"))
	}
	p.call("c", "quit")
}

// TestMailLegacyPlainAuth: smtp.legacy_plain_auth lets LAN clients (and
// loopback) log in without TLS on every protocol; turned off while the
// daemon runs, new connections must use TLS.
func TestMailLegacyPlainAuth(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{LegacyPlainAuth: true}, "submission", "pop3", "imap")
	p := startPy(t, d)

	p.connect("s", "submission")
	p.call("s", "ehlo", "old-client")
	if r := p.call("s", "has_extn", "auth"); string(r.Value) != "true" {
		t.Errorf("AUTH not offered without TLS with legacy_plain_auth: %s", r)
	}
	if code, msg := p.smtpAuth("s", "LOGIN", addr("rene.ricard"), renePassword).reply(); code != 235 {
		t.Fatalf("AUTH LOGIN without TLS, legacy_plain_auth: %d %s, want 235", code, msg)
	}
	p.call("s", "mail", addr("rene.ricard"))
	p.call("s", "rcpt", addr("thomas.petit"))
	if code, msg := p.call("s", "data", message(addr("rene.ricard"), addr("thomas.petit"), "legacy", "x\n")).reply(); code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	p.call("s", "quit")

	p.connect("p", "pop3")
	p.call("p", "user", addr("thomas.petit"))
	if r := p.call("p", "pass_", thomasPassword); !r.OK {
		t.Fatalf("POP3 USER/PASS without TLS, legacy_plain_auth: %s", r)
	}
	if r := p.call("p", "stat"); string(r.Value) == "" || !strings.HasPrefix(string(r.Value), "[1,") {
		t.Errorf("POP3 STAT: %s, want one message", r)
	}
	p.call("p", "quit")

	p.connect("i", "imap")
	if _, caps := p.must("i", "capability").imap(); strings.Contains(strings.Join(caps, " "), "LOGINDISABLED") {
		t.Errorf("IMAP CAPABILITY %v: LOGINDISABLED with legacy_plain_auth", caps)
	}
	p.must("i", "login", addr("thomas.petit"), thomasPassword)
	p.logout("i")

	// Off while running: applies to the next connections.
	d.setState(t, stateOpts{LegacyPlainAuth: false}, 2)

	p.connect("s2", "submission")
	p.call("s2", "ehlo", "old-client")
	if r := p.call("s2", "has_extn", "auth"); string(r.Value) != "false" {
		t.Errorf("AUTH still offered without TLS after legacy_plain_auth was turned off: %s", r)
	}
	if r := p.smtpAuth("s2", "LOGIN", addr("rene.ricard"), renePassword); !encryptionRequired(r) {
		t.Errorf("AUTH LOGIN without TLS after legacy_plain_auth was turned off: %s (code %d), want 538 5.7.11 or 530 5.7.0", r, r.Code)
	}
	p.drop("s2")

	p.connect("p2", "pop3")
	ru := p.call("p2", "user", addr("thomas.petit"))
	rp := p.call("p2", "pass_", thomasPassword)
	if ru.OK && rp.OK {
		t.Errorf("POP3 USER/PASS without TLS accepted after legacy_plain_auth was turned off: %s, %s", ru, rp)
	}
	p.drop("p2")

	p.connect("i2", "imap")
	if _, caps := p.must("i2", "capability").imap(); !strings.Contains(strings.Join(caps, " "), "LOGINDISABLED") {
		t.Errorf("IMAP CAPABILITY %v without TLS: no LOGINDISABLED after legacy_plain_auth was turned off", caps)
	}
	if r := p.call("i2", "login", addr("thomas.petit"), thomasPassword); r.OK {
		t.Errorf("IMAP LOGIN without TLS accepted after legacy_plain_auth was turned off: %s", r)
	}
	p.drop("i2")
}
