// Package smtpout sends mail to other servers. In direct mode it finds
// where a domain's mail goes (MX records in RFC 5321 §5.1 order, equal
// preferences shuffled; the implicit MX from A/AAAA when there is no MX;
// RFC 7505's null MX and NXDOMAIN refused at once), tries each MX host and
// each of its addresses until one answers the transaction, uses STARTTLS
// whenever offered (opportunistic, RFC 7435: any certificate; a failed
// handshake is tried again without TLS), and enforces the destination's
// MTA-STS policy (RFC 8461, through runtime/mtasts): in mode enforce an MX
// host outside the policy, or without TLS and a certificate valid for its
// name, is not used; mode testing only logs. In relay mode (Config.Relay),
// or for a message marked ViaRelay, it sends through the smarthost:
// implicit TLS on port 465 (RFC 8314), STARTTLS required elsewhere, the
// certificate always verified, AUTH PLAIN or LOGIN.
//
// It speaks SMTP with its own client: EHLO (HELO when EHLO is not
// understood), PIPELINING (RFC 2920: MAIL, every RCPT and DATA in one
// write), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), a
// deadline on every command and on each connection's use. Idle
// connections are kept a few seconds per host and address, and serve the
// next message after RSET.
//
// It tells, for each recipient, what the remote server answered (the whole
// reply), whether to retry, and whether the answer refused the box's
// address itself (a block answer, which the caller may retry through the
// smarthost). It keeps nothing on disk and never retries by itself: when
// to try again, bounces, DKIM and the record of what was sent belong to
// the caller (runtime/queue).
package smtpout

import (
	"context"
	"io"
)

// Message is one attempt at sending one message to recipients of one
// destination domain.
type Message struct {
	ID     string // the queue's id, for logs
	From   string // reverse path; "" is the null reverse path <>
	Domain string // destination domain, lower case, without a final dot
	Rcpts  []string
	// Body is the whole message as sent (header and body, CRLF lines);
	// Size its length. The sender may read it several times (another MX,
	// the smarthost).
	Body io.ReaderAt
	Size int64
	// EightBit asks for BODY=8BITMIME; SMTPUTF8 for SMTPUTF8 (RFC 6531).
	EightBit, SMTPUTF8 bool
	// ViaRelay sends through the smarthost even in direct mode: the
	// retry of a message a destination refused for the box's address.
	ViaRelay bool
}

// Result is what became of one recipient of a Message.
type Result struct {
	Rcpt string
	// Code is the SMTP reply code; 0 when no server answered for this
	// recipient (DNS failure, connection refused, TLS required but
	// absent, MTA-STS refusal).
	Code     int
	Enhanced string // the enhanced status code, "5.1.1", or ""
	// Text is the server's whole answer (the lines of a multi-line reply
	// joined by "\n"), or what went wrong when no server answered. It
	// goes into the bounce as the Diagnostic-Code.
	Text string
	Host string // the host that answered (MX or smarthost), or ""
	// Permanent: do not retry, bounce now (5xx, null MX, no such domain).
	// Otherwise, when Code is not 250, retry later.
	Permanent bool
	// Blocked: the destination refused the box's address itself (a block
	// list, a policy answer naming the client address, 5.7.1 "not
	// authorized"); the caller may retry through the smarthost.
	Blocked bool
	// Relay: the attempt went through the smarthost.
	Relay bool
}

// Delivered reports whether the recipient was accepted.
func (r Result) Delivered() bool { return r.Code >= 200 && r.Code < 300 }

// Sender sends messages; *Client is one. Send returns one Result per
// recipient of m, in the order of m.Rcpts.
type Sender interface {
	Send(ctx context.Context, m *Message) []Result
}
