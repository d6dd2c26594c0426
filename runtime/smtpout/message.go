// Package smtpout sends mail to other servers: it finds where a domain's
// mail goes (MX records in RFC 5321 order, the implicit MX, RFC 7505's
// null MX), connects with STARTTLS whenever offered, enforces the MTA-STS
// policy of the destination (RFC 8461, through runtime/mtasts), keeps
// connections open to send several messages over one, pipelines the
// envelope (RFC 2920), and in relay mode sends everything through the
// smarthost with a verified certificate and AUTH.
//
// It tells, for each recipient, what the remote server answered and
// whether to retry. It keeps nothing on disk: when to try again, bounces
// and the record of what was sent belong to the caller (runtime/queue).
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
