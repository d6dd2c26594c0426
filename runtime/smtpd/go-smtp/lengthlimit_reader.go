package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int

	// MailFountain's patch: err is the first error of R, which every Read
	// returns from then on. A read that failed (a deadline passing in the
	// middle of a line or of a BDAT chunk) leaves the stream out of step
	// with the protocol: nothing read after it may be taken for a command.
	// Upstream read on with a fresh deadline.
	err error
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	if r.err != nil {
		return 0, r.err
	}

	n, err := r.R.Read(b)
	if err != nil {
		r.err = err
		return n, err
	}

	if r.LineLimit == 0 {
		return n, nil
	}

	if err := r.count(b[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// count adds p to the length of the current line, failing past the limit.
//
// MailFountain's patch: upstream counts in a loop over every byte; this
// goes a line at a time and ends in the same state (see FuzzLineLimit).
func (r *lineLimitReader) count(p []byte) error {
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			i = len(p)
		}
		if r.curLineLength+i > r.LineLimit {
			r.curLineLength = r.LineLimit + 1 // where upstream stops
			return ErrTooLongLine
		}
		r.curLineLength += i
		if i == len(p) {
			return nil
		}
		// The LF counts as the first byte of the next line.
		r.curLineLength = 1
		if r.curLineLength > r.LineLimit {
			return ErrTooLongLine
		}
		p = p[i+1:]
	}
}
