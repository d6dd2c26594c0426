package smtp

// Tests of MailFountain's patch (see README.md): the patched readers give
// what upstream's byte-at-a-time ones give (for the data, with the same
// fix of the end of data: see dataend_test.go for the end itself), for
// any input and any sizes of reads, of the underlying stream and of
// bufio's buffer.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"testing"
)

// upstreamDataReader is go-smtp v0.25.1's dataReader.Read, unchanged but
// for its name and the two fixes of its states that data.go has (marked):
// the reference, a byte at a time.
type upstreamDataReader struct {
	r       *bufio.Reader
	state   int
	limited bool
	n       int64
}

func (r *upstreamDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
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
			// MailFountain's fix (data.go): the CR is data, c comes again.
			r.r.UnreadByte()
			c = '\r'
			r.state = stateCR
		case stateCR:
			switch c {
			case '\n':
				r.state = stateBeginLine
			case '\r':
				// MailFountain's fix (data.go): stays in stateCR.
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
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

// upstreamLineLimit is go-smtp v0.25.1's lineLimitReader.Read loop.
func upstreamLineLimit(cur *int, limit int, b []byte) error {
	for _, chr := range b {
		if chr == '\n' {
			*cur = 0
		}
		*cur++
		if *cur > limit {
			return ErrTooLongLine
		}
	}
	return nil
}

// drain reads r with reads of the given sizes (cycled) until an error,
// and returns what it read, the error, and what the stream holds after.
func drain(r io.Reader, sizes []int, rest *bufio.Reader) (got []byte, err error, after []byte) {
	for i := 0; ; i++ {
		size := 1
		if len(sizes) > 0 {
			size = sizes[i%len(sizes)]
		}
		b := make([]byte, size)
		var n int
		n, err = r.Read(b)
		got = append(got, b[:n]...)
		if err != nil || i > 1<<16 {
			break
		}
	}
	after, _ = io.ReadAll(rest)
	return got, err, after
}

func checkDataReader(t *testing.T, input []byte, bufSize, chunk int, sizes []int, limit int64) {
	t.Helper()
	open := func() *bufio.Reader {
		var src io.Reader = bytes.NewReader(input)
		if chunk > 0 {
			src = &chunkReader{r: src, n: chunk}
		}
		return bufio.NewReaderSize(src, bufSize)
	}
	br1, br2 := open(), open()
	want := &upstreamDataReader{r: br1, limited: limit > 0, n: limit}
	got := &dataReader{r: br2, limited: limit > 0, n: limit}
	w, werr, wafter := drain(want, sizes, br1)
	g, gerr, gafter := drain(got, sizes, br2)
	if !bytes.Equal(g, w) || !errors.Is(gerr, werr) || !bytes.Equal(gafter, wafter) || got.state != want.state || got.n != want.n {
		t.Fatalf("input %q (buffer %d, chunks %d, reads %v, limit %d):\npatched  %q, %v, then %q (state %d, n %d)\nupstream %q, %v, then %q (state %d, n %d)",
			input, bufSize, chunk, sizes, limit, g, gerr, gafter, got.state, got.n, w, werr, wafter, want.state, want.n)
	}
}

// chunkReader returns at most n bytes a read, like a socket.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(b) > c.n {
		b = b[:c.n]
	}
	return c.r.Read(b)
}

func TestDataReaderAsUpstream(t *testing.T) {
	inputs := []string{
		"",
		".\r\n",
		"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"..leading dot\r\n.\r\nNEXT",
		".x\r\n.\r\n",
		".\rX\r\n.\r\n",
		"a\rb\nc\r\n.\r\n",
		"line\r\n..\r\n.\r\n",
		"no end\r\n",
		"\r\n.\r\n",
		"a\r\n.\r",
		"abc\r\r\n.\r\n",
		"x\r\n.\n\r\n.\r\n",
	}
	for _, in := range inputs {
		for _, bufSize := range []int{16, 4096} {
			for _, chunk := range []int{0, 1, 3} {
				for _, sizes := range [][]int{{1}, {2, 5}, {4096}} {
					for _, limit := range []int64{0, 1, 5, 1 << 20} {
						checkDataReader(t, []byte(in), bufSize, chunk, sizes, limit)
					}
				}
			}
		}
	}
}

func FuzzDataReader(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n..body\r\n.\r\nQUIT\r\n"), uint8(16), uint8(0), uint8(7), uint16(0))
	f.Add([]byte(".\rX\r\n.\r\n"), uint8(16), uint8(1), uint8(1), uint16(3))
	f.Fuzz(func(t *testing.T, input []byte, bufSize, chunk, read uint8, limit uint16) {
		checkDataReader(t, input, 16+int(bufSize), int(chunk%8), []int{1 + int(read), 1 + int(read)/3}, int64(limit))
	})
}

func checkLineLimit(t *testing.T, input []byte, limit, chunk int) {
	t.Helper()
	r := &lineLimitReader{R: bytes.NewReader(input), LineLimit: limit}
	if chunk > 0 {
		r.R = &chunkReader{r: r.R, n: chunk}
	}
	cur := 0
	for {
		b := make([]byte, 7)
		n, err := r.R.Read(b)
		if n > 0 {
			// The same bytes through both counts.
			werr := upstreamLineLimit(&cur, limit, b[:n])
			gerr := r.count(b[:n])
			if werr != gerr || cur != r.curLineLength {
				t.Fatalf("input %q, limit %d: patched %v (count %d), upstream %v (count %d)", input, limit, gerr, r.curLineLength, werr, cur)
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestLineLimitAsUpstream(t *testing.T) {
	for _, in := range []string{"", "\n", "abc\ndef\n", "abcdef", "a\n\n\nbcdefgh\nij"} {
		for _, limit := range []int{1, 2, 3, 4, 10} {
			for _, chunk := range []int{0, 1, 2} {
				checkLineLimit(t, []byte(in), limit, chunk)
			}
		}
	}
}

func FuzzLineLimit(f *testing.F) {
	f.Add([]byte("abc\ndef\n"), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, input []byte, limit, chunk uint8) {
		checkLineLimit(t, input, 1+int(limit%64), int(chunk%9))
	})
}

// checkReadLine reads input with readWholeLine and with textproto's
// ReadLine (upstream's): the same lines, but for a last one without its
// LF, which upstream returned as a line and readWholeLine does not.
func checkReadLine(t *testing.T, input []byte, bufSize, chunk int) {
	t.Helper()
	open := func() *bufio.Reader {
		var src io.Reader = bytes.NewReader(input)
		if chunk > 0 {
			src = &chunkReader{r: src, n: chunk}
		}
		return bufio.NewReaderSize(src, bufSize)
	}
	up := textproto.NewReader(open())
	br := open()
	for i := 0; ; i++ {
		want, werr := up.ReadLine()
		got, gerr := readWholeLine(br)
		if gerr != nil {
			if werr == nil {
				// A last line without its LF, then the end.
				if _, werr = up.ReadLine(); werr == nil || bytes.HasSuffix(input, []byte("\n")) {
					t.Fatalf("input %q (buffer %d, chunks %d), line %d: %v, upstream %q then %v", input, bufSize, chunk, i, gerr, want, werr)
				}
			}
			if !errors.Is(gerr, werr) {
				t.Fatalf("input %q (buffer %d, chunks %d), line %d: error %v, upstream %v", input, bufSize, chunk, i, gerr, werr)
			}
			return
		}
		if werr != nil || got != want {
			t.Fatalf("input %q (buffer %d, chunks %d), line %d: %q, upstream %q, %v", input, bufSize, chunk, i, got, want, werr)
		}
	}
}

func TestReadWholeLine(t *testing.T) {
	for _, in := range []string{
		"", "\r\n", "NOOP\r\n", "NOOP\n", "NOOP", "NOOP\r", "a\rb\r\n", "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT",
		"\r\r\n\n", string(bytes.Repeat([]byte("x"), 100)) + "\r\nNOOP\r\n",
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, chunk := range []int{0, 1, 3} {
				checkReadLine(t, []byte(in), bufSize, chunk)
			}
		}
	}
}

func FuzzReadWholeLine(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT"), uint8(0), uint8(1))
	f.Add([]byte("a\rb\r\n\n\r"), uint8(16), uint8(0))
	f.Fuzz(func(t *testing.T, input []byte, bufSize, chunk uint8) {
		checkReadLine(t, input, 16+int(bufSize), int(chunk%8))
	})
}
