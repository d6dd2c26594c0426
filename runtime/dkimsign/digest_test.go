package dkimsign

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// randomMessage makes a message of the shapes that canonicalization gets
// wrong: folded fields, white space runs, bare LF and CR, trailing blank
// lines, lines of white space, no final line end, an empty body, long
// lines.
func randomMessage(r *rand.Rand) string {
	eol := func() string { return []string{"\r\n", "\r\n", "\n"}[r.IntN(3)] }
	wsp := func() string { return []string{" ", "\t", "  \t ", ""}[r.IntN(4)] }
	var b strings.Builder
	fields := []string{"From", "To", "Subject", "Date", "Message-ID", "X-Other", "Cc", "Reply-To", "Content-Type"}
	b.WriteString("From:" + wsp() + "Alice  <alice@example.com>" + wsp() + eol())
	for range r.IntN(8) {
		name := fields[r.IntN(len(fields))]
		if r.IntN(4) == 0 {
			name = strings.ToUpper(name)
		}
		b.WriteString(name + wsp() + ":" + wsp() + "value" + wsp() + "x")
		for range r.IntN(3) {
			b.WriteString(eol() + []string{" ", "\t", "   "}[r.IntN(3)] + "continued" + wsp())
		}
		b.WriteString(eol())
	}
	b.WriteString(eol())
	tokens := []string{"", " ", "\t", "  \t", "\r\n", "\n", "\r", "word", "é", "\r\n\r\n", "\n\n\n", " \r\n", "\t\n",
		strings.Repeat("x", 1000), strings.Repeat("a b\t", 300)}
	for range r.IntN(40) {
		b.WriteString(tokens[r.IntN(len(tokens))])
	}
	switch r.IntN(4) {
	case 0:
		b.WriteString(strings.Repeat("\r\n", r.IntN(5000))) // trailing blank lines, past maxPend
	case 1:
		b.WriteString(strings.Repeat("\r\n \t", r.IntN(3000)) + "end")
	}
	return b.String()
}

var bhTag = regexp.MustCompile(`bh=([^;]+);`)

// goMsgauthBodyHash is go-msgauth's body hash of msg (relaxed).
func goMsgauthBodyHash(t *testing.T, msg string, k Keys) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain: k.Domain, Selector: k.Ed25519.Selector, Signer: k.Ed25519.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatalf("go-msgauth signs %q: %v", msg, err)
	}
	m := bhTag.FindStringSubmatch(strings.Join(strings.Fields(out.String()), ""))
	if m == nil {
		t.Fatalf("no bh= in %q", out.String())
	}
	return m[1]
}

// Our one-pass signatures verify with go-msgauth for random messages fed
// in random pieces, and the body hash is go-msgauth's own.
func TestDigestRandomMessages(t *testing.T) {
	k, recs := keysForTest(t)
	r := rand.New(rand.NewPCG(1, 2))
	n := 600
	if testing.Short() {
		n = 100
	}
	for i := range n {
		msg := randomMessage(r)
		d := newDigest()
		for rest := msg; len(rest) > 0; {
			c := min(len(rest), 1+r.IntN(200))
			d.Write([]byte(rest[:c]))
			rest = rest[c:]
		}
		if !d.inBody || d.tooLarge {
			t.Fatalf("message %d: header not read: %q", i, msg)
		}
		if got, want := base64.StdEncoding.EncodeToString(d.bodyHash()), goMsgauthBodyHash(t, msg, k); got != want {
			t.Fatalf("message %d: body hash %s, go-msgauth's %s\n%q", i, got, want, msg)
		}
		signed := signString(t, msg, k)
		if algs := goVerify(t, signed, recs); len(algs) != 2 {
			t.Fatalf("message %d: verified %v\n%q", i, algs, signed)
		}
	}
}

// The header fields as a verifier reads them, and their relaxed form.
func TestDigestHeader(t *testing.T) {
	d := newDigest()
	d.Write([]byte("From: a\r\n\tb \r\nSUBJECT :  x\t y \nX-No-Colon\r\n\r\nbody"))
	got := strings.Join(d.fields(), "|")
	want := "From: a\r\n\tb \r\n|SUBJECT :  x\t y \r\n|X-No-Colon\r\n"
	if got != want {
		t.Errorf("fields %q, want %q", got, want)
	}
	var rel []string
	for _, f := range d.fields() {
		rel = append(rel, relaxedHeader(f))
	}
	if got, want := strings.Join(rel, "|"), "from:a b\r\n|subject:x y\r\n|x-no-colon:\r\n"; got != want {
		t.Errorf("relaxed %q, want %q", got, want)
	}
}

// A body of blank lines costs no memory: the pending line ends past
// maxPend are hashed speculatively.
func TestDigestBlankBody(t *testing.T) {
	d := newDigest()
	d.Write([]byte("From: a@example.com\r\n\r\nx"))
	for range 1000 {
		d.Write(bytes.Repeat([]byte("\r\n"), 1000))
	}
	if len(d.pend) >= maxPend || d.spec == nil {
		t.Errorf("%d bytes pending", len(d.pend))
	}
	d.Write([]byte("y"))
	if d.spec != nil || len(d.pend) != 0 {
		t.Errorf("pending after y: %d bytes, spec %v", len(d.pend), d.spec != nil)
	}
}

// BenchmarkDigest10KB is the one pass over a 10 KB message: the header
// kept, the body canonicalized and hashed (no signing).
func BenchmarkDigest10KB(b *testing.B) {
	var m strings.Builder
	m.WriteString("From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: a bench\r\n\r\n")
	for m.Len() < 10<<10 {
		m.WriteString("Lorem ipsum dolor sit amet,  consectetur adipiscing elit, sed do eiusmod.\r\n")
	}
	msg := []byte(m.String())
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		d := newDigest()
		d.Write(msg)
		d.bodyHash()
	}
}

// A header over maxHeader is not kept: Signatures refuses the message,
// Signer.Sign sends it unsigned; neither panics, whatever the pieces.
func TestDigestHeaderTooLarge(t *testing.T) {
	k, _ := keysForTest(t)
	s := NewSigner(signerDir(t))
	big := "From: alice@example.com\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("y", 70)+"\r\n", maxHeader/80+1) + "\r\nbody\r\n"
	if _, err := Signatures(strings.NewReader(big), k); err == nil {
		t.Error("Signatures signed a header over maxHeader")
	}
	for _, piece := range []int{61, 64 << 10, len(big)} {
		fields, err := s.Sign(func(w io.Writer) error {
			for rest := big; len(rest) > 0; {
				n := min(len(rest), piece)
				io.WriteString(w, rest[:n])
				rest = rest[n:]
			}
			return nil
		})
		if fields != nil || err != nil {
			t.Errorf("pieces of %d: %q, %v; want unsigned", piece, fields, err)
		}
	}
}
