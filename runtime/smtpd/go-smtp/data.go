package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// States of dataReader, from net/textproto's dotReader.
const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

// Read elides leading dots and stops at the end-of-data line
// (<CR><LF>.<CR><LF>), without rewriting CRLF to LF.
//
// MailFountain's patch: it works on the bytes bufio holds rather than one
// ReadByte call per byte, copying the middle of each line (up to its CR)
// at once; the state machine is upstream's but for two CRs it mishandled
// (below, and README.md), and the results are those of a byte-at-a-time
// reader with the same states (see FuzzDataReader).
func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	for n < len(b) && r.state != stateEOF {
		if r.r.Buffered() == 0 {
			// Fills the buffer with one read, as ReadByte would.
			if _, err = r.r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				break
			}
		}
		avail, _ := r.r.Peek(r.r.Buffered())
		i := 0
		for i < len(avail) && n < len(b) && r.state != stateEOF {
			if r.state == stateData {
				// Up to the next CR, every byte is data.
				rest := avail[i:]
				if cr := bytes.IndexByte(rest, '\r'); cr >= 0 {
					rest = rest[:cr]
				}
				m := copy(b[n:], rest)
				n += m
				i += m
				if i == len(avail) || n == len(b) {
					break
				}
			}
			c := avail[i]
			i++
			switch r.state {
			case stateBeginLine:
				if c == '.' {
					r.state = stateDot
					continue
				}
				if c == '\r' {
					r.state = stateCR
					break
				}
				r.state = stateData
			case stateDot:
				if c == '\r' {
					r.state = stateDotCR
					continue
				}
				r.state = stateData
			case stateDotCR:
				if c == '\n' {
					r.state = stateEOF
					continue
				}
				// MailFountain's patch: the CR after the dot is data,
				// and c is read again after it; upstream dropped the CR.
				c = '\r'
				i--
				r.state = stateCR
			case stateCR:
				switch c {
				case '\n':
					r.state = stateBeginLine
				case '\r':
					// MailFountain's patch: this CR may start the line
					// end; upstream went to stateData, so that
					// "\r\r\n.\r\n" did not end the data.
				default:
					r.state = stateData
				}
			case stateData:
				if c == '\r' {
					r.state = stateCR
				}
			}
			b[n] = c
			n++
		}
		r.r.Discard(i)
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}
