package dkimsign

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// signedFields are the header fields signed, From twice: the second,
// absent, From in h= makes a From added in transit break the signature
// (RFC 6376 section 8.15). A listed field the message lacks is signed as
// absent, so that adding it breaks the signature too.
var signedFields = []string{
	"From", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"In-Reply-To", "References",
}

// Signatures reads a whole message and returns the two DKIM-Signature
// header fields (ed25519, then RSA; each ending in CRLF) to put before it.
// Both signatures are computed in the one read, which canonicalizes and
// hashes the body once for both (digest). The header is kept until the
// end, up to maxHeader: a larger one is refused.
func Signatures(msg io.Reader, k Keys) (string, error) {
	if k.Ed25519.Signer == nil || k.RSA.Signer == nil {
		return "", errors.New("dkim sign: no keys")
	}
	// A first line that starts with white space would continue the last
	// DKIM-Signature field put before it, and break that signature.
	var first [1]byte
	if _, err := io.ReadFull(msg, first[:]); err != nil {
		return "", fmt.Errorf("dkim sign: reading the message: %w", err)
	}
	if first[0] == ' ' || first[0] == '\t' {
		return "", errors.New("dkim sign: the message starts with a continuation line")
	}
	d := newDigest()
	d.Write(first[:])
	if _, err := io.Copy(d, msg); err != nil {
		return "", fmt.Errorf("dkim sign: %w", err)
	}
	switch {
	case d.tooLarge:
		return "", fmt.Errorf("dkim sign: a header over %d bytes", maxHeader)
	case !d.inBody:
		return "", errors.New("dkim sign: the header does not end")
	}
	return d.signatures(k, time.Now())
}

// Sign writes to w the message msg signed: the two DKIM-Signature fields,
// then the message, its bare LFs made CRLF (SMTP's line end; the
// signatures hold either way, relaxed canonicalization reads LF as CRLF).
//
// msg is read twice, the second time after a seek to its start: a spooled
// file, not a buffer. Memory is the header and copy buffers, whatever the
// size of the body.
func Sign(w io.Writer, msg io.ReadSeeker, k Keys) error {
	start, err := msg.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("dkim sign: %w", err)
	}
	sigs, err := Signatures(msg, k)
	if err != nil {
		return err
	}
	if _, err := msg.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("dkim sign: %w", err)
	}
	if _, err := io.WriteString(w, sigs); err != nil {
		return fmt.Errorf("dkim sign: %w", err)
	}
	cw := &crlfWriter{w: w}
	if _, err := io.Copy(cw, msg); err != nil {
		return fmt.Errorf("dkim sign: %w", err)
	}
	return nil
}

// crlfWriter passes on what it is given with a CR put before each bare LF.
// runtime/smtpd has its own (crlf, crlfWriter), unexported, for the spool:
// a server package, which this library must not import.
type crlfWriter struct {
	w      io.Writer
	lastCR bool // the last byte written ended in CR
	buf    []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	c.buf = c.buf[:0]
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			c.buf = append(c.buf, rest...)
			c.lastCR = rest[len(rest)-1] == '\r'
			break
		}
		c.buf = append(c.buf, rest[:i]...)
		if !(i > 0 && rest[i-1] == '\r' || i == 0 && c.lastCR) {
			c.buf = append(c.buf, '\r')
		}
		c.buf = append(c.buf, '\n')
		// Only the LF right after the previous piece's CR is paired with it.
		c.lastCR = false
		rest = rest[i+1:]
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
