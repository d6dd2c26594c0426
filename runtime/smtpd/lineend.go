package smtpd

import (
	"bytes"
	"io"
)

// Line ends. RFC 5321 2.3.8 and RFC 5322 2.3: CR and LF occur only
// together, as CRLF. The server takes a bare LF for a line end and stores
// it as CRLF, as Postfix 3.9 does by default (smtpd_forbid_bare_newline =
// normalize); it refuses a message with a bare CR (see errBareCR), which
// readers take in different ways. See the package documentation.

// eolScan follows the line ends of a message as it arrives, piece by
// piece: it notes whether there was a bare CR or a bare LF.
type eolScan struct {
	lastCR bool // the last piece ended with CR: its LF may start the next
	bareCR bool
	bareLF bool
}

// Write scans p, the next piece of the message; it never fails (it sits in
// an io.MultiWriter next to the spool file).
func (s *eolScan) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.lastCR && p[0] != '\n' {
		s.bareCR = true
	}
	// Every LF must follow a CR; then every CR but a final one must be
	// one of those: counting the CRs at once is cheaper than looking
	// after each.
	pairs := 0
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		switch {
		case j > 0 && p[j-1] == '\r':
			pairs++
		case j == 0 && s.lastCR:
		default:
			s.bareLF = true
		}
		i = j + 1
	}
	s.lastCR = p[len(p)-1] == '\r'
	final := 0
	if s.lastCR {
		final = 1
	}
	if bytes.Count(p, []byte{'\r'}) != pairs+final {
		s.bareCR = true
	}
	return len(p), nil
}

// end notes the end of the message: a CR there is bare.
func (s *eolScan) end() {
	if s.lastCR {
		s.bareCR = true
	}
}

// crlf rewrites bare LFs as CRLF, over pieces of a message in order.
type crlf struct {
	lastCR bool // the last byte seen was a CR
}

// append appends p to dst with a CR before each bare LF.
func (c *crlf) append(dst, p []byte) []byte {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.lastCR = p[len(p)-1] == '\r'
			return append(dst, p...)
		}
		dst = append(dst, p[:i]...)
		if !(i > 0 && p[i-1] == '\r' || i == 0 && c.lastCR) {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		c.lastCR = false
		p = p[i+1:]
	}
	return dst
}

// crlfChunk bounds what crlfWriter rewrites at once.
const crlfChunk = 32 << 10

// crlfWriter writes to w what it is given, bare LFs made CRLF.
type crlfWriter struct {
	w       io.Writer
	c       crlf
	buf     []byte
	written int64 // bytes written to w
}

func (cw *crlfWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		piece := p[:min(len(p), crlfChunk)]
		cw.buf = cw.c.append(cw.buf[:0], piece)
		m, err := cw.w.Write(cw.buf)
		cw.written += int64(m)
		if err != nil {
			return n, err
		}
		n += len(piece)
		p = p[len(piece):]
	}
	return n, nil
}
