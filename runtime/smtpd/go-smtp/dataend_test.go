package smtp

// Tests of MailFountain's patch to the end of the data (see README.md):
// dataReader against RFC 5321 read plainly.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// rfcData reads input as RFC 5321 says (4.1.1.4, 4.5.2): the data ends at
// the first CRLF "." CRLF, the first line counting as one after a CRLF,
// and a dot that starts a line is removed. ok is false when input holds
// no end; data is then what the lines so far give.
func rfcData(input []byte) (data, rest []byte, ok bool) {
	s := append([]byte("\r\n"), input...)
	body := s[2:]
	if end := bytes.Index(s, []byte("\r\n.\r\n")); end >= 0 {
		body, rest, ok = s[2:end+2], s[end+5:], true
	}
	for _, line := range bytes.SplitAfter(body, []byte("\r\n")) {
		data = append(data, bytes.TrimPrefix(line, []byte("."))...)
	}
	return data, rest, ok
}

func checkDataEnd(t *testing.T, input []byte, bufSize, chunk, read int) {
	t.Helper()
	var src io.Reader = bytes.NewReader(input)
	if chunk > 0 {
		src = &chunkReader{r: src, n: chunk}
	}
	br := bufio.NewReaderSize(src, bufSize)
	got, err, after := drain(&dataReader{r: br}, []int{read}, br)
	want, rest, ok := rfcData(input)
	switch {
	case ok && (!errors.Is(err, io.EOF) || !bytes.Equal(got, want) || !bytes.Equal(after, rest)):
		t.Fatalf("input %q (buffer %d, chunks %d, reads %d): %q, %v, then %q; want %q, EOF, then %q",
			input, bufSize, chunk, read, got, err, after, want, rest)
	case !ok && (!errors.Is(err, io.ErrUnexpectedEOF) || !bytes.HasPrefix(want, got)):
		t.Fatalf("input %q (buffer %d, chunks %d, reads %d): %q, %v; want a prefix of %q, unexpected EOF",
			input, bufSize, chunk, read, got, err, want)
	}
}

func TestDataReaderEnd(t *testing.T) {
	for _, in := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		".\r\n",
		"..a\r\n..\r\n.\r\n",
		// A CR before the line end: CRLF.CRLF is there all the same
		// (upstream went on reading).
		"a\r\r\n.\r\nQUIT\r\n",
		"a\r\n.\r\r\n.\r\nQUIT\r\n",
		"\r\r\n.\r\n",
		"a\r\r\r\n.\r\n",
		// ".<CR>" then not LF: the CR is data (upstream dropped it).
		"a\r\n.\rX\r\n.\r\n",
		".\r.\r\n.\r\n",
		// Bare LFs end nothing.
		"a\n.\nb\r\n.\r\n",
		"a\r\n.\nb\r\n.\r\n",
		"a\n.\r\nb\r\n.\r\n",
		"a\r.\rb\r\n.\r\n",
		"no end\r\n.",
		"no end\r\n.\r",
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, chunk := range []int{0, 1, 3} {
				for _, read := range []int{1, 2, 4096} {
					checkDataEnd(t, []byte(in), bufSize, chunk, read)
				}
			}
		}
	}
}

func FuzzDataReaderEnd(f *testing.F) {
	f.Add([]byte("a\r\r\n.\r\nQUIT\r\n"), uint8(0), uint8(1), uint8(7))
	f.Add([]byte("a\r\n.\rX\r\n.\r\n"), uint8(16), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, input []byte, bufSize, chunk, read uint8) {
		checkDataEnd(t, input, 16+int(bufSize), int(chunk%8), 1+int(read))
	})
}
