// Package dsn builds the delivery status notifications the outbound
// queue sends: bounces, delay warnings and, when a sender asked for them
// (RFC 3461 NOTIFY=SUCCESS), success reports. It implements RFC 3464
// (message/delivery-status) inside an RFC 6522 multipart/report, and
// RFC 3834's Auto-Submitted for the report itself.
//
// A report has three parts: a text/plain explanation in the domain's
// language (fr or en), the message/delivery-status part a program reads,
// and the original message: its header (text/rfc822-headers) by default,
// as most MTAs do, or the whole message (message/rfc822) when the sender
// asked for it with RET=FULL and it is at most MaxFull bytes; a larger one
// is returned as its header, and the text says so. The header returned is
// at most MaxHeader bytes, cut at a field boundary.
//
// The report comes from postmaster@ the domain (RFC 5321 requires that
// mailbox to exist, so a user who answers a bounce reaches a person, not
// a second bounce) and is sent with the null reverse-path <>, so that it
// can never bounce itself.
//
// The rules against loops are not left to the caller: Build refuses (with
// ErrNoReport) a report to the null sender <> and a report about a
// message that is itself automatic (ShouldReport says why). The remote
// server's answer and the original header come from outside; they are
// written so that the report stays valid mail: CRLF lines of at most 998
// octets, the answer's non-ASCII or control bytes replaced by '?'. A
// multi-line answer is one Diagnostic-Code field, each line of the answer
// a continuation line, so that unfolding joins them with a space; a run
// of more than 990 octets without a space is cut, which adds a space.
//
// The caller gives the real envelope sender (an SRS address already
// reversed). Recipient addresses must be ASCII: UTF-8 addresses need
// message/global-delivery-status (RFC 6533), which is not written here.
// A report whose original part holds non-ASCII octets is marked EightBit
// for the queue (BODY=8BITMIME).
//
// The package does no I/O and keeps no state: when to send a report
// (after lifetime, after delay_warning, on a 5xx), the retry schedule and
// the sending itself belong to the queue.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"time"
)

// Action is the per-recipient Action field of RFC 3464 (section 2.3.3).
type Action string

const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Return is what of the original message the report carries (RFC 3461 RET).
type Return int

const (
	ReturnHeaders Return = iota // the header only (the default, and RET=HDRS)
	ReturnFull                  // the whole message up to MaxFull (RET=FULL)
)

const (
	// MaxFull is the largest original message returned whole; a larger
	// one is returned as its header, so that a bounce of a 30 MB
	// attachment does not send 30 MB back.
	MaxFull = 128 << 10
	// MaxHeader bounds the returned header: a message with thousands of
	// Received fields gets the first ones only.
	MaxHeader = 64 << 10
)

// ErrNoReport is returned by Build for a report that must not be sent:
// to the null sender or about an automatic message (see ShouldReport).
var ErrNoReport = errors.New("no delivery report for this message")

// Recipient is one recipient's outcome.
type Recipient struct {
	Addr     string // the address the delivery was tried to (Final-Recipient)
	Original string // the address as the sender gave it (ORCPT), if different
	Action   Action
	// Status is the RFC 3463 code "X.Y.Z"; empty takes the enhanced code
	// of Diagnostic when it has one of the right class, else X.0.0.
	Status     string
	RemoteMTA  string // host name (or [address]) of the server that answered
	Diagnostic string // the server's full answer, multi-line as received
	// LastAttempt and RetryUntil are written when set; RetryUntil is for
	// delayed recipients (Will-Retry-Until).
	LastAttempt time.Time
	RetryUntil  time.Time
}

// Report is one notification to one envelope sender about one message.
type Report struct {
	ReportingMTA string // this box's host name (Reporting-MTA: dns; …)
	Domain       string // the sender's domain on the box: From is postmaster@Domain
	Language     string // "fr" or "en" (the schema's #Language)
	Sender       string // the envelope sender the report goes to
	EnvelopeID   string // the ENVID of MAIL FROM (RFC 3461), if any
	Arrival      time.Time
	Date         time.Time // the report's Date; zero is now
	Recipients   []Recipient
	// Original is the message as received. For ReturnHeaders its header
	// suffices; for ReturnFull it must be the whole message.
	Original []byte
	Return   Return
}

// Message is a built report, ready for the queue.
type Message struct {
	EnvelopeFrom string // always "": the null reverse-path <>
	EnvelopeTo   string // the original envelope sender
	Data         []byte // the message, CRLF lines
	// EightBit is set when Data holds non-ASCII octets (the original
	// header or message, or a non-ASCII address): the queue must send it
	// with BODY=8BITMIME (and SMTPUTF8 for a non-ASCII address).
	EightBit bool
}

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// replyCodeRE finds the enhanced status code of an SMTP answer's first line.
var replyCodeRE = regexp.MustCompile(`^[0-9]{3}[ -]([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:[ \t]|$)`)

// Build writes the report. It fails on a report that must not be sent
// (ErrNoReport) and on a caller's mistake (an unknown language or action,
// a malformed address or status); it never fails on what came from
// outside (the answer, the original message).
func (r *Report) Build() (*Message, error) {
	sender := strings.TrimSpace(r.Sender)
	if strings.HasPrefix(sender, "<") && strings.HasSuffix(sender, ">") {
		sender = sender[1 : len(sender)-1]
	}
	if ok, why := ShouldReport(sender, r.Original); !ok {
		return nil, fmt.Errorf("build delivery report to <%s>: %w: %s", sender, ErrNoReport, why)
	}
	t, ok := texts[r.Language]
	if !ok {
		return nil, fmt.Errorf("build delivery report: language %q is neither fr nor en", r.Language)
	}
	if err := checkAddr(sender); err != nil {
		return nil, fmt.Errorf("build delivery report: sender: %w", err)
	}
	if err := checkToken(r.ReportingMTA); err != nil {
		return nil, fmt.Errorf("build delivery report: reporting MTA: %w", err)
	}
	if err := checkToken(r.Domain); err != nil {
		return nil, fmt.Errorf("build delivery report: domain: %w", err)
	}
	if r.EnvelopeID != "" {
		if err := checkToken(r.EnvelopeID); err != nil {
			return nil, fmt.Errorf("build delivery report: envelope id: %w", err)
		}
	}
	if len(r.Recipients) == 0 {
		return nil, errors.New("build delivery report: no recipient")
	}
	rcpts := make([]Recipient, len(r.Recipients))
	for i, rc := range r.Recipients {
		var err error
		if rcpts[i], err = checkRecipient(rc); err != nil {
			return nil, fmt.Errorf("build delivery report: recipient %d: %w", i+1, err)
		}
	}
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}

	header := headerOf(r.Original)
	full := r.Return == ReturnFull && len(r.Original) > 0 && len(r.Original) <= MaxFull
	note := t.hdrs
	switch {
	case len(r.Original) == 0:
		note = ""
	case full:
		note = t.full
	case r.Return == ReturnFull:
		note = t.tooBig
	}

	boundary := randomHex(16)
	var b bytes.Buffer
	kind := reportKind(rcpts)
	writeField(&b, "From", encodeWord(t.from)+" <postmaster@"+r.Domain+">")
	writeField(&b, "To", "<"+sender+">")
	writeField(&b, "Subject", encodeWord(t.subject[kind]))
	writeField(&b, "Date", date.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+randomHex(16)+"@"+r.ReportingMTA+">")
	if id := originalField(header, "Message-ID"); isMsgID(id) {
		writeField(&b, "In-Reply-To", id)
		writeField(&b, "References", id)
	}
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n")
	b.WriteString("\r\n")
	b.WriteString("This is a delivery status notification (RFC 3464) in MIME format.\r\n")

	// The explanation, quoted-printable: UTF-8 in 7-bit lines of at most 76.
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("Content-Disposition: inline\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(t.explain(r.ReportingMTA, decodedSubject(header), rcpts, note)))
	qp.Close() // the text ends with a line break: no blank line is added before the boundary

	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	writeStatus(&b, r, rcpts)

	b.WriteString("\r\n--" + boundary + "\r\n")
	var orig []byte
	if full {
		b.WriteString("Content-Type: message/rfc822\r\n")
		orig = normalizeLines(r.Original, 0)
	} else {
		b.WriteString("Content-Type: text/rfc822-headers\r\n")
		orig = normalizeLines(header, MaxHeader)
	}
	eight := !isASCII(orig)
	if eight {
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	}
	b.WriteString("\r\n")
	b.Write(orig)
	b.WriteString("\r\n--" + boundary + "--\r\n")

	return &Message{
		EnvelopeFrom: "",
		EnvelopeTo:   sender,
		Data:         b.Bytes(),
		EightBit:     eight || !isASCII([]byte(sender)),
	}, nil
}

// writeStatus writes the message/delivery-status body: the per-message
// fields, then one blank-line separated group per recipient.
func writeStatus(b *bytes.Buffer, r *Report, rcpts []Recipient) {
	writeField(b, "Reporting-MTA", "dns; "+r.ReportingMTA)
	if r.EnvelopeID != "" {
		writeField(b, "Original-Envelope-Id", r.EnvelopeID)
	}
	if !r.Arrival.IsZero() {
		writeField(b, "Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range rcpts {
		b.WriteString("\r\n")
		if rc.Original != "" {
			writeField(b, "Original-Recipient", "rfc822; "+rc.Original)
		}
		writeField(b, "Final-Recipient", "rfc822; "+rc.Addr)
		writeField(b, "Action", string(rc.Action))
		writeField(b, "Status", rc.Status)
		if rc.RemoteMTA != "" {
			writeField(b, "Remote-MTA", "dns; "+rc.RemoteMTA)
		}
		if lines := answerLines(rc.Diagnostic); len(lines) > 0 {
			lines[0] = "smtp; " + lines[0]
			writeFolded(b, "Diagnostic-Code:", lines)
		}
		if !rc.LastAttempt.IsZero() {
			writeField(b, "Last-Attempt-Date", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !rc.RetryUntil.IsZero() {
			writeField(b, "Will-Retry-Until", rc.RetryUntil.Format(time.RFC1123Z))
		}
	}
}

func checkRecipient(rc Recipient) (Recipient, error) {
	for _, a := range []string{rc.Addr, rc.Original} {
		if err := checkAddr(a); err != nil {
			return rc, err
		}
		if !isASCII([]byte(a)) {
			// message/delivery-status is 7-bit; UTF-8 addresses need
			// message/global-delivery-status (RFC 6533), not written here.
			return rc, fmt.Errorf("address %q: non-ASCII addresses need RFC 6533, which this package does not write", a)
		}
	}
	if rc.Addr == "" {
		return rc, errors.New("no address")
	}
	switch rc.Action {
	case Failed, Delayed, Delivered, Relayed, Expanded:
	default:
		return rc, fmt.Errorf("action %q is not one of RFC 3464", rc.Action)
	}
	if rc.RemoteMTA != "" {
		if err := checkToken(rc.RemoteMTA); err != nil {
			return rc, fmt.Errorf("remote MTA: %w", err)
		}
	}
	class := map[Action]byte{Failed: '5', Delayed: '4', Delivered: '2', Relayed: '2', Expanded: '2'}[rc.Action]
	if rc.Status == "" {
		rc.Status = string(class) + ".0.0"
		if lines := answerLines(rc.Diagnostic); len(lines) > 0 {
			if m := replyCodeRE.FindStringSubmatch(lines[0]); m != nil && (m[1][0] == class || rc.Action == Failed && m[1][0] == '4') {
				// A 4xx answered until the lifetime ran out is a failure
				// whose code stays the remote server's.
				rc.Status = m[1]
			}
		}
	}
	if !statusRE.MatchString(rc.Status) {
		return rc, fmt.Errorf("status %q is not an RFC 3463 code", rc.Status)
	}
	return rc, nil
}

// checkAddr refuses what would break a header field: an address is
// written as is, so it must be one token of printable characters.
func checkAddr(a string) error {
	if strings.ContainsAny(a, "<>") {
		return fmt.Errorf("address %q: angle brackets", a)
	}
	return checkChars(a)
}

func checkToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return checkChars(s)
}

func checkChars(s string) error {
	if len(s) > 500 {
		return fmt.Errorf("%.40q…: longer than 500 octets", s)
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%q: space or control character", s)
		}
	}
	return nil
}

// reportKind is the action the subject speaks of: the worst one present.
func reportKind(rcpts []Recipient) Action {
	kind := Delivered
	for _, rc := range rcpts {
		switch {
		case rc.Action == Failed:
			return Failed
		case rc.Action == Delayed:
			kind = Delayed
		}
	}
	return kind
}

// answerLines splits a remote answer into its lines, made printable
// ASCII: message/delivery-status is 7-bit (RFC 3464 section 2.1.1).
func answerLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		bs := []byte(strings.TrimRight(l, "\r"))
		for i, c := range bs {
			switch {
			case c == '\t':
				bs[i] = ' '
			case c < ' ' || c >= 0x7f:
				bs[i] = '?'
			}
		}
		if t := strings.TrimSpace(string(bs)); t != "" {
			lines = append(lines, t)
		}
	}
	return lines
}

// foldAt is the length a field line is folded at when it has a space to
// fold at; hardLimit the length at which it is cut even inside a word
// (RFC 5322 allows 998; the margin keeps room for the CRLF).
const (
	foldAt    = 78
	hardLimit = 990
)

func writeField(b *bytes.Buffer, name, value string) {
	writeFolded(b, name+":", []string{value})
}

// writeFolded writes a field whose value is several lines (an SMTP
// answer): each becomes a continuation line, so that unfolding joins them
// with a space, and a long one is folded before a space. A run without
// space longer than hardLimit is cut, which adds one space when unfolded.
func writeFolded(b *bytes.Buffer, name string, lines []string) {
	cur := name
	flush := func() {
		if strings.TrimSpace(cur) != "" { // never a line of white space alone
			b.WriteString(cur + "\r\n")
		}
		cur = ""
	}
	for i, l := range lines {
		if i > 0 {
			flush()
		}
		start := true // nothing of this line on cur yet
		for _, w := range strings.Split(l, " ") {
			if !start && len(cur)+1+len(w) > foldAt {
				flush()
			}
			cur += " " + w
			start = false
			if len(cur) > hardLimit {
				// Cut in slices of the string: a megabyte without a
				// space costs one pass, not one copy per line.
				b.WriteString(cur[:hardLimit])
				cur = cur[hardLimit:]
				for len(cur) > hardLimit-1 {
					b.WriteString("\r\n " + cur[:hardLimit-1])
					cur = cur[hardLimit-1:]
				}
				b.WriteString("\r\n")
				cur = " " + cur
			}
		}
	}
	flush()
}

// encodeWord encodes a header text as RFC 2047 when it is not ASCII.
func encodeWord(s string) string {
	return mime.QEncoding.Encode("utf-8", s)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	rand.Read(buf) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(buf)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func isMsgID(s string) bool {
	return len(s) > 2 && len(s) < 500 && s[0] == '<' && s[len(s)-1] == '>' &&
		strings.IndexFunc(s, func(c rune) bool { return c <= ' ' || c >= 0x7f }) < 0 &&
		strings.Count(s, "<") == 1 && strings.Count(s, ">") == 1
}
