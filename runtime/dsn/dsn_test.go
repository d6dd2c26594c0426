package dsn

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"mailfountain.dev/mailfountain/runtime/dsn/dsntest"
)

var (
	arrival = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	tried   = time.Date(2026, 12, 4, 13, 0, 0, 0, time.UTC)
	until   = time.Date(2026, 12, 9, 9, 0, 0, 0, time.UTC)
)

const origHeader = "Received: from client (client [192.0.2.7])\r\n\tby mx.ma-societe.fr\r\n" +
	"From: Alice <alice@ma-societe.fr>\r\nTo: bob@example.net\r\n" +
	"Subject: =?utf-8?q?R=C3=A9union_de_d=C3=A9cembre?=\r\n" +
	"Message-ID: <abc123@ma-societe.fr>\r\nDate: Fri, 04 Dec 2026 09:00:00 +0000\r\n"

const multiLine = "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n" +
	"550-5.1.1 double-checking the recipient's email address for typos or\r\n" +
	"550 5.1.1 unnecessary spaces. https://support.example.net/mail/?p=NoSuchUser x1si123 - gsmtp"

// checkLines asserts the wire rules: CRLF only, no line over 998 octets.
func checkLines(t testing.TB, data []byte) {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatalf("report does not end with CRLF")
	}
	for i, l := range bytes.Split(data[:len(data)-2], []byte("\r\n")) {
		if len(l) > 998 {
			t.Fatalf("line %d is %d octets", i+1, len(l))
		}
		if bytes.ContainsAny(l, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i+1, l)
		}
	}
}

// goGroups parses the report with go-message and returns the report's
// header, its parts' content types and the delivery-status groups.
func goGroups(t testing.TB, data []byte) (message.Header, []string, []textproto.Header) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-message: %v", err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("go-message: not multipart")
	}
	var types []string
	var groups []textproto.Header
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("go-message: next part: %v", err)
		}
		ct, _, _ := p.Header.ContentType()
		types = append(types, ct)
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("go-message: read %s: %v", ct, err)
		}
		if ct == "message/delivery-status" {
			br := bufioReader(body)
			for {
				h, err := textproto.ReadHeader(br)
				if err != nil {
					t.Fatalf("go-message: delivery-status group: %v", err)
				}
				if h.Len() == 0 {
					break
				}
				groups = append(groups, h)
			}
		}
	}
	return e.Header, types, groups
}

func TestBuild(t *testing.T) {
	huge := origHeader + "\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 16<<10)
	manyReceived := strings.Repeat("Received: from relay.example.org by relay2.example.org with ESMTP id 1234567890\r\n", 2000) + origHeader
	for _, c := range []struct {
		name        string
		report      Report
		subject     string
		from        string
		actions     []string
		statuses    []string
		diag        []string // Diagnostic-Code as python unfolds it; "" for none
		textHas     []string
		third       string // content type of the third part
		originalHas []string
		maxSize     int
		eightBit    bool
		textLacks   []string
	}{{
		name: "failed en multi-line answer",
		report: Report{Language: "en", Return: ReturnHeaders, Original: []byte(origHeader + "\r\nbody\r\n"),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, RemoteMTA: "mx.example.net", Diagnostic: multiLine, LastAttempt: tried}}},
		subject:  "Undelivered Mail Returned to Sender",
		from:     "Mail Delivery System <postmaster@ma-societe.fr>",
		actions:  []string{"failed"},
		statuses: []string{"5.1.1"},
		diag:     []string{"smtp; " + strings.ReplaceAll(multiLine, "\r\n", " ")},
		textHas: []string{"could not be delivered", "bob@example.net", "The server mx.example.net answered:",
			"550 5.1.1 unnecessary spaces.", "Subject of your message: Réunion de décembre", "header of your message is attached"},
		third:       "text/rfc822-headers",
		originalHas: []string{"Message-ID: <abc123@ma-societe.fr>", "\tby mx.ma-societe.fr"},
	}, {
		name: "failed fr",
		report: Report{Language: "fr", Original: []byte(origHeader),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, RemoteMTA: "mx.example.net", Diagnostic: "554 5.7.1 Service unavailable; client host [198.51.100.1] blocked"}}},
		subject:  "Message non remis",
		from:     "Système de distribution du courrier <postmaster@ma-societe.fr>",
		actions:  []string{"failed"},
		statuses: []string{"5.7.1"},
		diag:     []string{"smtp; 554 5.7.1 Service unavailable; client host [198.51.100.1] blocked"},
		textHas: []string{"Votre message n'a pas pu être remis au destinataire suivant", "Le serveur mx.example.net a répondu :",
			"Objet de votre message : Réunion de décembre", "Les en-têtes de votre message sont joints."},
		third: "text/rfc822-headers",
	}, {
		name: "delayed fr",
		report: Report{Language: "fr", Original: []byte(origHeader),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Delayed, RemoteMTA: "mx.example.net", Diagnostic: "451 4.7.1 Greylisted, try again later", LastAttempt: tried, RetryUntil: until}}},
		subject:  "Message retardé (nouvel essai en cours)",
		actions:  []string{"delayed"},
		statuses: []string{"4.7.1"},
		diag:     []string{"smtp; 451 4.7.1 Greylisted, try again later"},
		textHas:  []string{"n'a pas encore pu être remis", "inutile de le renvoyer", "Nouvel essai jusqu'au mercredi 9 décembre 2026 à 09:00 (UTC)."},
		third:    "text/rfc822-headers",
	}, {
		name: "delayed en, no enhanced code",
		report: Report{Language: "en", Original: []byte(origHeader),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Delayed, RemoteMTA: "mx.example.net", Diagnostic: "421 too many connections", RetryUntil: until}}},
		subject:  "Delayed Mail (still being retried)",
		actions:  []string{"delayed"},
		statuses: []string{"4.0.0"},
		diag:     []string{"smtp; 421 too many connections"},
		textHas:  []string{"still trying", "Tried again until Wednesday 9 December 2026 at 09:00 (UTC)."},
		third:    "text/rfc822-headers",
	}, {
		name: "several recipients, mixed",
		report: Report{Language: "fr", EnvelopeID: "QQ314159", Original: []byte(origHeader),
			Recipients: []Recipient{
				{Addr: "bob@example.net", Original: "Bob@Example.net", Action: Failed, RemoteMTA: "mx.example.net", Diagnostic: "550 5.1.1 <bob@example.net>: Recipient address rejected"},
				{Addr: "carol@example.org", Action: Delayed, RemoteMTA: "mx.example.org", Diagnostic: "452 4.2.2 Mailbox full", RetryUntil: until},
				{Addr: "dave@example.com", Action: Failed, Status: "5.4.4", Diagnostic: ""},
			}},
		subject:  "Message non remis",
		actions:  []string{"failed", "delayed", "failed"},
		statuses: []string{"5.1.1", "4.2.2", "5.4.4"},
		diag:     []string{"smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected", "smtp; 452 4.2.2 Mailbox full", ""},
		textHas:  []string{"aux destinataires suivants", "bob@example.net", "carol@example.org", "dave@example.com", "au destinataire suivant. Le système"},
		third:    "text/rfc822-headers",
	}, {
		name: "4xx until lifetime is a failure with the remote code",
		report: Report{Language: "en", Original: []byte(origHeader),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, RemoteMTA: "mx.example.net", Diagnostic: "450 4.2.0 try later"}}},
		subject:  "Undelivered Mail Returned to Sender",
		actions:  []string{"failed"},
		statuses: []string{"4.2.0"},
		diag:     []string{"smtp; 450 4.2.0 try later"},
		third:    "text/rfc822-headers",
	}, {
		name: "full return of a small message",
		report: Report{Language: "en", Return: ReturnFull, Original: []byte(origHeader + "\r\nHello Bob,\r\n\r\nsee you.\r\n"),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: "550 5.1.1 no such user"}}},
		actions:     []string{"failed"},
		statuses:    []string{"5.1.1"},
		diag:        []string{"smtp; 550 5.1.1 no such user"},
		textHas:     []string{"Your message is attached."},
		third:       "message/rfc822",
		originalHas: []string{"Hello Bob,\r\n\r\nsee you."},
	}, {
		name: "huge message asked whole is returned as its header",
		report: Report{Language: "fr", Return: ReturnFull, Original: []byte(huge),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: "552 5.3.4 message too big"}}},
		actions:     []string{"failed"},
		statuses:    []string{"5.3.4"},
		diag:        []string{"smtp; 552 5.3.4 message too big"},
		textHas:     []string{"trop volumineux"},
		third:       "text/rfc822-headers",
		originalHas: []string{"Message-ID: <abc123@ma-societe.fr>"},
		maxSize:     8 << 10,
	}, {
		name: "huge header cut at a field",
		report: Report{Language: "en", Original: []byte(manyReceived + "\r\nbody\r\n"),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: "550 5.1.1 no"}}},
		actions:  []string{"failed"},
		statuses: []string{"5.1.1"},
		diag:     []string{"smtp; 550 5.1.1 no"},
		third:    "text/rfc822-headers",
		maxSize:  MaxHeader + 8<<10,
	}, {
		name: "raw UTF-8 in the original header (RFC 6532)",
		report: Report{Language: "fr", Original: []byte("From: Hélène <helene@ma-societe.fr>\r\nSubject: Réunion à 10 h\r\n\r\nbody"),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: "550 5.1.1 no"}}},
		actions:     []string{"failed"},
		statuses:    []string{"5.1.1"},
		diag:        []string{"smtp; 550 5.1.1 no"},
		textHas:     []string{"Objet de votre message : Réunion à 10 h"},
		third:       "text/rfc822-headers",
		originalHas: []string{"Subject: Réunion à 10 h", "From: Hélène"},
		eightBit:    true,
	}, {
		name: "no original, full asked",
		report: Report{Language: "en", Return: ReturnFull,
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Failed, Diagnostic: "550 5.1.1 no"}}},
		actions:   []string{"failed"},
		statuses:  []string{"5.1.1"},
		diag:      []string{"smtp; 550 5.1.1 no"},
		third:     "text/rfc822-headers",
		textLacks: []string{"attached", "too large"},
	}, {
		name: "delivered (NOTIFY=SUCCESS)",
		report: Report{Language: "en", Original: []byte(origHeader),
			Recipients: []Recipient{{Addr: "bob@example.net", Action: Delivered, RemoteMTA: "mx.example.net", Diagnostic: "250 2.0.0 OK queued as 12345"}}},
		subject:  "Successful Mail Delivery Report",
		actions:  []string{"delivered"},
		statuses: []string{"2.0.0"},
		diag:     []string{"smtp; 250 2.0.0 OK queued as 12345"},
		third:    "text/rfc822-headers",
	}} {
		t.Run(c.name, func(t *testing.T) {
			r := c.report
			r.ReportingMTA, r.Domain, r.Sender, r.Arrival = "mail.ma-societe.fr", "ma-societe.fr", "alice@ma-societe.fr", arrival
			m, err := r.Build()
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if m.EnvelopeFrom != "" || m.EnvelopeTo != "alice@ma-societe.fr" {
				t.Errorf("envelope %q → %q, want <> → alice@ma-societe.fr", m.EnvelopeFrom, m.EnvelopeTo)
			}
			if c.maxSize > 0 && len(m.Data) > c.maxSize {
				t.Errorf("report is %d octets, want at most %d", len(m.Data), c.maxSize)
			}
			checkLines(t, m.Data)
			if m.EightBit != c.eightBit {
				t.Errorf("EightBit = %v, want %v", m.EightBit, c.eightBit)
			}

			py := dsntest.Read(t, m.Data)
			if py.ContentType != "multipart/report" || py.ReportType != "delivery-status" {
				t.Errorf("python: %s report-type=%s", py.ContentType, py.ReportType)
			}
			if len(py.Defects) > 0 {
				t.Errorf("python defects: %v", py.Defects)
			}
			if want := []string{"text/plain", "message/delivery-status", c.third}; strings.Join(py.Parts, " ") != strings.Join(want, " ") {
				t.Errorf("python parts %v, want %v", py.Parts, want)
			}
			if c.subject != "" && py.Subject != c.subject {
				t.Errorf("python Subject %q, want %q", py.Subject, c.subject)
			}
			if c.from != "" && py.From != c.from {
				t.Errorf("python From %q, want %q", py.From, c.from)
			}
			if py.To != "alice@ma-societe.fr" || py.AutoSubmitted != "auto-replied" || py.MIMEVersion != "1.0" {
				t.Errorf("python To %q Auto-Submitted %q MIME-Version %q", py.To, py.AutoSubmitted, py.MIMEVersion)
			}
			if py.PerMessage["Reporting-MTA"] != "dns; mail.ma-societe.fr" || py.PerMessage["Arrival-Date"] != "Fri, 04 Dec 2026 09:00:00 +0000" {
				t.Errorf("python per-message fields %v", py.PerMessage)
			}
			if r.EnvelopeID != "" && py.PerMessage["Original-Envelope-Id"] != r.EnvelopeID {
				t.Errorf("python Original-Envelope-Id %q", py.PerMessage["Original-Envelope-Id"])
			}
			if len(py.Recipients) != len(c.actions) {
				t.Fatalf("python: %d recipient groups, want %d: %v", len(py.Recipients), len(c.actions), py.Recipients)
			}
			for i, g := range py.Recipients {
				rc := r.Recipients[i]
				if g["Final-Recipient"] != "rfc822; "+rc.Addr || g["Action"] != c.actions[i] || g["Status"] != c.statuses[i] {
					t.Errorf("python recipient %d: %v, want %s %s %s", i, g, rc.Addr, c.actions[i], c.statuses[i])
				}
				if g["Diagnostic-Code"] != c.diag[i] {
					t.Errorf("python recipient %d Diagnostic-Code\n got %q\nwant %q", i, g["Diagnostic-Code"], c.diag[i])
				}
				if rc.Original != "" && g["Original-Recipient"] != "rfc822; "+rc.Original {
					t.Errorf("python recipient %d Original-Recipient %q", i, g["Original-Recipient"])
				}
				if rc.RemoteMTA != "" && g["Remote-MTA"] != "dns; "+rc.RemoteMTA {
					t.Errorf("python recipient %d Remote-MTA %q", i, g["Remote-MTA"])
				}
				if want := "Wed, 09 Dec 2026 09:00:00 +0000"; rc.Action == Delayed && !rc.RetryUntil.IsZero() && g["Will-Retry-Until"] != want {
					t.Errorf("python recipient %d Will-Retry-Until %q, want %q", i, g["Will-Retry-Until"], want)
				}
				if want := "Fri, 04 Dec 2026 13:00:00 +0000"; !rc.LastAttempt.IsZero() && g["Last-Attempt-Date"] != want {
					t.Errorf("python recipient %d Last-Attempt-Date %q, want %q", i, g["Last-Attempt-Date"], want)
				}
			}
			for _, s := range c.textHas {
				if !strings.Contains(strings.ReplaceAll(py.Text, "\n", " "), strings.ReplaceAll(s, "\n", " ")) {
					t.Errorf("python text part lacks %q:\n%s", s, py.Text)
				}
			}
			for _, s := range c.textLacks {
				if strings.Contains(py.Text, s) {
					t.Errorf("python text part has %q:\n%s", s, py.Text)
				}
			}
			orig := py.Original + py.OrigBody
			if c.third == "message/rfc822" {
				if py.OrigSubject != "Réunion de décembre" {
					t.Errorf("python returned message's Subject %q", py.OrigSubject)
				}
			}
			for _, s := range c.originalHas {
				if !strings.Contains(strings.ReplaceAll(orig, "\r", ""), strings.ReplaceAll(s, "\r", "")) {
					t.Errorf("python original part lacks %q:\n%.500s", s, orig)
				}
			}

			// The same report through go-message.
			h, types, groups := goGroups(t, m.Data)
			if ct, params, _ := h.ContentType(); ct != "multipart/report" || params["report-type"] != "delivery-status" {
				t.Errorf("go-message: %s %v", ct, params)
			}
			if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != c.third {
				t.Errorf("go-message parts %v", types)
			}
			if len(groups) != 1+len(c.actions) {
				t.Fatalf("go-message: %d groups", len(groups))
			}
			for i, g := range groups[1:] {
				if g.Get("Action") != c.actions[i] || g.Get("Status") != c.statuses[i] {
					t.Errorf("go-message recipient %d: Action %q Status %q", i, g.Get("Action"), g.Get("Status"))
				}
			}
		})
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
