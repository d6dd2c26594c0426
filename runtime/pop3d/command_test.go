package pop3d

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line string
		want command
		err  error
	}{
		{"STAT", command{Name: "STAT"}, nil},
		{"stat", command{Name: "STAT"}, nil},
		{"List 1", command{Name: "LIST", Args: []string{"1"}, Rest: "1"}, nil},
		{"TOP 1 10", command{Name: "TOP", Args: []string{"1", "10"}, Rest: "1 10"}, nil},
		{"TOP  1   10 ", command{Name: "TOP", Args: []string{"1", "10"}, Rest: " 1   10 "}, nil},
		{"PASS my secret pw", command{Name: "PASS", Args: []string{"my", "secret", "pw"}, Rest: "my secret pw"}, nil},
		{"PASS  lead", command{Name: "PASS", Args: []string{"lead"}, Rest: " lead"}, nil},
		{"NOOP ", command{Name: "NOOP", Rest: ""}, nil},
		{"PASS tab\there", command{Name: "PASS", Args: []string{"tab\there"}, Rest: "tab\there"}, nil},
		{"", command{}, errEmptyLine},
		{" STAT", command{}, errBadKeyword},
		{"STATS", command{}, errBadKeyword},
		{"ST4T", command{}, errBadKeyword},
		{"RETR\x001", command{}, errBadChar},
		{"USER a\rPASS b", command{}, errBadChar},
		{"NOOP\x7f", command{}, errBadChar},
		{"ÉTAT", command{}, errBadKeyword},
	}
	for _, c := range cases {
		got, err := parseCommand([]byte(c.line))
		if !errors.Is(err, c.err) {
			t.Errorf("parseCommand(%q) error %v, want %v", c.line, err, c.err)
			continue
		}
		if got.Name != c.want.Name || got.Rest != c.want.Rest || !slices.Equal(got.Args, c.want.Args) {
			t.Errorf("parseCommand(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
}

func TestParseNumbers(t *testing.T) {
	msgs := []struct {
		s  string
		n  int
		ok bool
	}{
		{"1", 1, true}, {"42", 42, true}, {"007", 7, true}, {"0", 0, false}, {"-1", 0, false},
		{"+1", 0, false}, {"1x", 0, false}, {"", 0, false}, {"9999999999", 0, false}, {"1 ", 0, false},
	}
	for _, c := range msgs {
		if n, ok := parseMsgNumber(c.s); n != c.n || ok != c.ok {
			t.Errorf("parseMsgNumber(%q) = %d, %v; want %d, %v", c.s, n, ok, c.n, c.ok)
		}
	}
	counts := []struct {
		s  string
		n  int
		ok bool
	}{
		{"0", 0, true}, {"000", 0, true}, {"10", 10, true}, {"99999999999999999999", 1 << 30, true},
		{"-1", 0, false}, {"", 0, false}, {"1e3", 0, false},
	}
	for _, c := range counts {
		if n, ok := parseLineCount(c.s); n != c.n || ok != c.ok {
			t.Errorf("parseLineCount(%q) = %d, %v; want %d, %v", c.s, n, ok, c.n, c.ok)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecodePlain(t *testing.T) {
	cases := []struct {
		in                   string
		authz, authc, passwd string
		err                  error
	}{
		{b64("\x00alice@example.org\x00s3cret"), "", "alice@example.org", "s3cret", nil},
		{b64("alice@example.org\x00alice@example.org\x00pass word"), "alice@example.org", "alice@example.org", "pass word", nil},
		{b64("\x00alice\x00"), "", "", "", errBadPlain},
		{b64("\x00\x00pw"), "", "", "", errBadPlain},
		{b64("alice\x00pw"), "", "", "", errBadPlain},
		{b64("a\x00b\x00c\x00d"), "", "", "", errBadPlain},
		{"", "", "", "", errBadPlain},
		{"not base64!", "", "", "", errBadBase64},
		{"AGFsaWNl\nAHB3", "", "", "", errBadBase64}, // the decoder would skip the LF
		{"AGFsaWNl\rAHB3", "", "", "", errBadBase64},
		{strings.TrimRight(b64("\x00a\x00bc"), "="), "", "", "", errBadBase64},
		{b64("\x00a\x00" + strings.Repeat("x", maxPlainBytes)), "", "", "", errBadPlain},
	}
	for _, c := range cases {
		authz, authc, passwd, err := decodePlain(c.in)
		if !errors.Is(err, c.err) || authz != c.authz || authc != c.authc || passwd != c.passwd {
			t.Errorf("decodePlain(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				c.in, authz, authc, passwd, err, c.authz, c.authc, c.passwd, c.err)
		}
	}
}

func TestWriteMessage(t *testing.T) {
	long := strings.Repeat("x", 70<<10) // longer than the copy buffer
	cases := []struct {
		name      string
		msg       string
		bodyLines int
		want      string
	}{
		{"plain", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"dots stuffed", "S: x\r\n\r\n.\r\n..\r\n.hidden\r\na.b\r\n", -1, "S: x\r\n\r\n..\r\n...\r\n..hidden\r\na.b\r\n.\r\n"},
		{"bare LF made CRLF", "A: b\n\nline\n.dot\n", -1, "A: b\r\n\r\nline\r\n..dot\r\n.\r\n"},
		{"no final line end", "A: b\r\n\r\nlast", -1, "A: b\r\n\r\nlast\r\n.\r\n"},
		{"empty message", "", -1, ".\r\n"},
		{"CR inside a line kept", "A: b\r\n\r\nx\ry\r\n", -1, "A: b\r\n\r\nx\ry\r\n.\r\n"},
		{"CR at the very end kept", "A: b\r\n\r\nx\r", -1, "A: b\r\n\r\nx\r\r\n.\r\n"},
		{"lone CR", "\r", -1, "\r\r\n.\r\n"},
		{"top 0", "A: b\r\nC: d\r\n\r\n1\r\n2\r\n", 0, "A: b\r\nC: d\r\n\r\n.\r\n"},
		{"top 1", "A: b\r\n\r\n.1\r\n2\r\n", 1, "A: b\r\n\r\n..1\r\n.\r\n"},
		{"top more than there is", "A: b\r\n\r\n1\r\n", 5, "A: b\r\n\r\n1\r\n.\r\n"},
		{"top without body", "A: b\r\n", 3, "A: b\r\n.\r\n"},
		{"top header dot line", ".A: b\r\n\r\n1\r\n", 0, "..A: b\r\n\r\n.\r\n"},
		{"long line in pieces", "A: b\r\n\r\n." + long + "\r\n.end\r\n", -1, "A: b\r\n\r\n.." + long + "\r\n..end\r\n.\r\n"},
		{"long line then top", "A: " + long + "\r\n\r\n1\r\n2\r\n", 1, "A: " + long + "\r\n\r\n1\r\n.\r\n"},
		// A CRLF split by the buffer's end is still one line end, and a
		// blank line so split still ends the header.
		{"CRLF across pieces", "A: b\r\n" + strings.Repeat("y", 32<<10-1-6) + "\r\n\r\n.z\r\n", -1,
			"A: b\r\n" + strings.Repeat("y", 32<<10-1-6) + "\r\n\r\n..z\r\n.\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			if err := writeMessage(w, strings.NewReader(c.msg), c.bodyLines); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if got := out.String(); got != c.want {
				t.Fatalf("got %q\nwant %q", trunc(got), trunc(c.want))
			}
			// Short reads must not change the result.
			out.Reset()
			w.Reset(&out)
			if err := writeMessage(w, iotest.HalfReader(strings.NewReader(c.msg)), c.bodyLines); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if got := out.String(); got != c.want {
				t.Fatalf("half reads: got %q\nwant %q", trunc(got), trunc(c.want))
			}
		})
	}
}

// TestWriteMessageSplitBlankLine puts the CR of the blank line that ends a
// header exactly at the end of the copy buffer.
func TestWriteMessageSplitBlankLine(t *testing.T) {
	const buf = 32 << 10
	// The first line fills the buffer but one byte, so "\r" of the blank
	// line is the buffer's last byte and its "\n" the next read's first.
	first := "A: " + strings.Repeat("h", buf-1-3-2) + "\r\n"
	msg := first + "\r\nbody1\r\nbody2\r\n"
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := writeMessage(w, strings.NewReader(msg), 1); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if want := first + "\r\nbody1\r\n.\r\n"; out.String() != want {
		t.Fatalf("got %q, want %q", trunc(out.String()), trunc(want))
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

// FuzzParseCommand checks that the parser never panics and that what it
// accepts is well formed: a keyword of 1 to 4 uppercase letters, and
// arguments without spaces or control characters taken from the line.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"USER alice@example.org", "PASS a b c", "TOP 1 0", "LIST", "uidl 3", "AUTH PLAIN AGFsaWNlAHB3",
		"", " ", "STLS\r", "RETR\x00", "APOP a 0123456789abcdef", "QUIT  ", "X", "ÉTAT 1", "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseCommand(line)
		if err != nil {
			if cmd.Name != "" || cmd.Args != nil {
				t.Fatalf("error %v with a result %+v", err, cmd)
			}
			return
		}
		if n := len(cmd.Name); n < 1 || n > maxKeyword || strings.ToUpper(cmd.Name) != cmd.Name {
			t.Fatalf("%q: keyword %q", line, cmd.Name)
		}
		if !bytes.HasPrefix(bytes.ToUpper(line), []byte(cmd.Name)) {
			t.Fatalf("%q: keyword %q not from the line", line, cmd.Name)
		}
		if !bytes.HasSuffix(line, []byte(cmd.Rest)) {
			t.Fatalf("%q: rest %q not from the line", line, cmd.Rest)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.ContainsAny(a, " \r\n\x00") || !strings.Contains(cmd.Rest, a) {
				t.Fatalf("%q: bad argument %q", line, a)
			}
		}
		// The arguments are all of rest but its spaces.
		n := 0
		for _, a := range cmd.Args {
			n += len(a)
		}
		if n != len(cmd.Rest)-strings.Count(cmd.Rest, " ") {
			t.Fatalf("%q: args %q do not cover rest %q", line, cmd.Args, cmd.Rest)
		}
	})
}

// FuzzDecodePlain checks that the SASL PLAIN decoder never panics, that
// it accepts exactly the well-formed responses, and that encoding what it
// returns gives back its input.
func FuzzDecodePlain(f *testing.F) {
	for _, s := range []string{
		b64("\x00alice@example.org\x00secret"), b64("a\x00a\x00p"), "", "=", "*", "AGFsaWNl", "!!!!",
		b64("\x00\x00"), b64(strings.Repeat("\x00", 5)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		authz, authc, passwd, err := decodePlain(s)
		if err != nil {
			if authz != "" || authc != "" || passwd != "" {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if authc == "" || passwd == "" || strings.ContainsRune(authz+authc+passwd, 0) {
			t.Fatalf("%q: accepted %q %q %q", s, authz, authc, passwd)
		}
		if got := b64(authz + "\x00" + authc + "\x00" + passwd); got != s {
			t.Fatalf("round trip: %q became %q", s, got)
		}
	})
}

func TestUIDL(t *testing.T) {
	long := strings.Repeat("k", 71)
	cases := []struct {
		key  string
		same bool
	}{
		{"1795000000.M123456P42Q1R0abcdef1,S=1234", true},
		{strings.Repeat("k", 70), true},
		{long, false},
		{"with space", false},
		{"caf\xc3\xa9", false},
		{"", false},
	}
	for _, c := range cases {
		got := uidl(c.key)
		if (got == c.key) != c.same {
			t.Errorf("uidl(%q) = %q", c.key, got)
		}
		if len(got) < 1 || len(got) > 70 || strings.IndexFunc(got, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			t.Errorf("uidl(%q) = %q, not a valid unique-id", c.key, got)
		}
		if uidl(c.key) != got {
			t.Errorf("uidl(%q) is not stable", c.key)
		}
	}
	if uidl(long) == uidl(long+"k") {
		t.Error("two keys share a unique-id")
	}
}

// FuzzWriteMessage checks the RETR and TOP encoder on any message (mail
// comes from anyone): the answer is CRLF lines ending in the one line
// ".", un-stuffing RETR's gives back the message with its line ends made
// CRLF, and TOP's is a start of RETR's.
func FuzzWriteMessage(f *testing.F) {
	f.Add([]byte(msg1), 1)
	f.Add([]byte("A: b\n\n.\n..\n"), 0)
	f.Add([]byte("\r\r\n.\r"), 2)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, msg []byte, top int) {
		encode := func(lines int) string {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			if err := writeMessage(w, iotest.HalfReader(bytes.NewReader(msg)), lines); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			return out.String()
		}
		retr := encode(-1)
		if !strings.HasSuffix(retr, "\r\n.\r\n") && retr != ".\r\n" {
			t.Fatalf("%q: answer %q does not end in CRLF . CRLF", msg, retr)
		}
		lines := strings.Split(strings.TrimSuffix(retr, "\r\n.\r\n"), "\r\n")
		var got strings.Builder
		if retr != ".\r\n" {
			for _, l := range lines {
				if strings.Contains(l, "\n") || l == "." {
					t.Fatalf("%q: bad line %q in %q", msg, l, retr)
				}
				if strings.HasPrefix(l, ".") {
					l = l[1:]
				}
				got.WriteString(l + "\r\n")
			}
		}
		if want := crlf(msg); got.String() != want {
			t.Fatalf("%q: un-stuffed %q, want %q", msg, got.String(), want)
		}
		if top < 0 {
			top = -top
		}
		head := encode(top % 1000)
		if !strings.HasSuffix(head, ".\r\n") || !strings.HasPrefix(retr, strings.TrimSuffix(head, ".\r\n")) {
			t.Fatalf("%q: TOP %d gave %q, not a start of %q", msg, top%1000, head, retr)
		}
	})
}

// crlf makes every line end of msg CRLF and ends it with one.
func crlf(msg []byte) string {
	var b strings.Builder
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		b.WriteString("\r\n")
	}
	return b.String()
}
