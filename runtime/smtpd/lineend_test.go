package smtpd

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// refLineEnds is what eolScan and crlf compute, byte by byte: whether msg
// has a bare CR, a bare LF, and msg with a CR before each bare LF.
func refLineEnds(msg []byte) (bareCR, bareLF bool, crlf []byte) {
	for i, c := range msg {
		switch {
		case c == '\r' && (i+1 == len(msg) || msg[i+1] != '\n'):
			bareCR = true
		case c == '\n' && (i == 0 || msg[i-1] != '\r'):
			bareLF = true
			crlf = append(crlf, '\r')
		}
		crlf = append(crlf, c)
	}
	return bareCR, bareLF, crlf
}

// scanPieces runs eolScan and crlf over msg cut at the given offsets.
func scanPieces(msg []byte, cuts []int) (eolScan, []byte) {
	var s eolScan
	var c crlf
	var out []byte
	prev := 0
	for _, cut := range append(cuts, len(msg)) {
		cut = max(prev, min(cut, len(msg)))
		s.Write(msg[prev:cut])
		out = c.append(out, msg[prev:cut])
		prev = cut
	}
	s.end()
	return s, out
}

func TestLineEnds(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{
		"", "a", "\r\n", "a\r\nb\r\n", "\n", "\r", "a\nb", "a\rb", "\r\r\n", "\n\r", "\r\n\n", "\r\n\r",
		"Subject: x\r\n\r\nbody\r\n", "X: b\rY: c\r\n", "a\n.\r\nb", "\r\n.\n",
	} {
		wantCR, wantLF, wantOut := refLineEnds([]byte(msg))
		// Every way of cutting the message in two or three pieces.
		for i := 0; i <= len(msg); i++ {
			for j := i; j <= len(msg); j++ {
				s, out := scanPieces([]byte(msg), []int{i, j})
				if s.bareCR != wantCR || s.bareLF != wantLF || !bytes.Equal(out, wantOut) {
					t.Fatalf("%q cut at %d, %d: bare CR %v, bare LF %v, %q; want %v, %v, %q",
						msg, i, j, s.bareCR, s.bareLF, out, wantCR, wantLF, wantOut)
				}
			}
		}
	}
}

// FuzzLineEnds checks the scan and the rewriting of line ends against
// the byte-by-byte reference, however the message arrives in pieces.
func FuzzLineEnds(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\rd\r"), uint8(3), uint8(5))
	f.Add([]byte("\r\n.\n\n.\r\n"), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, msg []byte, i, j uint8) {
		wantCR, wantLF, wantOut := refLineEnds(msg)
		s, out := scanPieces(msg, []int{int(i), int(i) + int(j)})
		if s.bareCR != wantCR || s.bareLF != wantLF || !bytes.Equal(out, wantOut) {
			t.Fatalf("%q: bare CR %v, bare LF %v, %q; want %v, %v, %q", msg, s.bareCR, s.bareLF, out, wantCR, wantLF, wantOut)
		}
		if bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
			t.Fatalf("bare LF left in %q", out)
		}
	})
}

// TestSpoolCRLF reads messages with bare LFs back from the spool, in
// memory and spilled to a file, with and without dropped ranges, through
// Read, WriteTo and both: every way gives the message made CRLF.
func TestSpoolCRLF(t *testing.T) {
	t.Parallel()
	p := &spoolPool{limit: 1000, dir: t.TempDir()}
	for _, n := range []int{10, 999, 1000, 1001, 5000, 70000} {
		var b strings.Builder
		b.WriteString("Drop: me\n")
		for b.Len() < n {
			b.WriteString("line\nand\r\n")
		}
		in := []byte(b.String()[:n])
		m, err := p.read(bytes.NewReader(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !m.eol.bareLF || m.eol.bareCR != bytes.HasSuffix(in, []byte("\r")) {
			t.Fatalf("%d bytes: scan %+v", n, m.eol)
		}
		prefix := []byte("Return-Path: <>\r\n")
		for _, drop := range [][][2]int{nil, {{0, 9}}} {
			rest := in
			if drop != nil {
				rest = in[len("Drop: me\n"):]
			}
			_, _, want := refLineEnds(append(append([]byte(nil), prefix...), rest...))
			got, err := io.ReadAll(m.reader(prefix, drop)) // Read
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, drop %v, Read: %v\n%q\nwant\n%q", n, drop, err, got, want)
			}
			var buf bytes.Buffer
			r := m.reader(prefix, drop)
			written, err := io.Copy(&buf, r) // WriteTo
			if err != nil || !bytes.Equal(buf.Bytes(), want) || written != int64(len(want)) {
				t.Fatalf("%d bytes, drop %v, WriteTo: %d, %v\n%q\nwant\n%q", n, drop, written, err, buf.Bytes(), want)
			}
			buf.Reset()
			r = m.reader(prefix, drop)
			head := make([]byte, 5)
			k, _ := io.ReadFull(r, head)
			buf.Write(head[:k])
			written, err = r.WriteTo(&buf) // both
			if err != nil || !bytes.Equal(buf.Bytes(), want) || written != int64(len(want)-k) {
				t.Fatalf("%d bytes, drop %v, Read then WriteTo: %d, %v\n%q\nwant\n%q", n, drop, written, err, buf.Bytes(), want)
			}
		}
		m.release()
	}
}
