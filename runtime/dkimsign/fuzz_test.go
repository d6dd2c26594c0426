package dkimsign

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// FuzzSign signs what a client may submit: signing never panics, and a
// message it signs verifies.
func FuzzSign(f *testing.F) {
	for _, m := range messages {
		f.Add(m.msg)
	}
	f.Add("From: a@example.com\r\nbroken header line\r\n\r\nbody\r")
	f.Add("From: a@example.com\rSubject: x\r\n\r\n\rbody\r\r\n")
	k, recs := keysForTest(f)
	f.Fuzz(func(t *testing.T, msg string) {
		var out bytes.Buffer
		if err := Sign(&out, strings.NewReader(msg), k); err != nil {
			return
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(out.Bytes()), &dkim.VerifyOptions{LookupTXT: lookupFrom(recs)})
		if err != nil {
			t.Fatalf("verify: %v\n%q", err, out.Bytes())
		}
		for _, v := range vs {
			if v.Err != nil {
				t.Fatalf("%s: %v\n%q", v.Domain, v.Err, out.Bytes())
			}
		}
	})
}

// FuzzSignerSign gives Signer.Sign what a client may submit: it never
// panics, and what it signs
// verifies once its fields are put before the message (CRLF line ends, as
// the queue sends it) with the domain of the From.
func FuzzSignerSign(f *testing.F) {
	for _, m := range messages {
		f.Add(m.msg)
	}
	f.Add("From: a@example.com, b@example.org\r\n\r\nx")
	f.Add("From: =?utf-8?q?A?= <a@EXAMPLE.com>\r\nSubject: x")
	f.Add("Subject x\r\nFrom: a@example.com\r\n\r\n")
	dir := f.TempDir()
	mine, err := Ensure(dir, "example.com", day1)
	if err != nil {
		f.Fatal(err)
	}
	myRecs, _ := mine.Records()
	s := NewSigner(dir)
	f.Fuzz(func(t *testing.T, msg string) {
		fields, err := signerSign(s, msg)
		if err != nil || fields == nil {
			return
		}
		var signed bytes.Buffer
		signed.Write(fields)
		(&crlfWriter{w: &signed}).Write([]byte(msg))
		if !headerEnds(msg) {
			// go-msgauth's verifier cannot read a message that is all
			// header (dkimpy can: TestSignerSignsByFrom); the empty
			// body is the same with the blank line added.
			if !bytes.HasSuffix(signed.Bytes(), []byte("\r\n")) {
				signed.WriteString("\r\n")
			}
			signed.WriteString("\r\n")
		}
		m := map[string]string{}
		for _, rec := range myRecs {
			m[rec.Name] = rec.Value()
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed.Bytes()), &dkim.VerifyOptions{LookupTXT: lookupFrom(m)})
		if err != nil || len(vs) != 2 {
			t.Fatalf("verify: %d signatures, %v\n%q", len(vs), err, signed.Bytes())
		}
		for _, v := range vs {
			if v.Err != nil || v.Domain != "example.com" {
				t.Fatalf("%s: %v\n%q", v.Domain, v.Err, signed.Bytes())
			}
		}
	})
}

// headerEnds tells whether msg has a blank line: a message that is all
// header lacks it.
func headerEnds(msg string) bool {
	return strings.Contains("\n"+msg, "\n\n") || strings.Contains("\n"+msg, "\n\r\n")
}

// FuzzDigestBodyHash: the one-pass body hash of any body, given in
// pieces of any size, is go-msgauth's (relaxed).
func FuzzDigestBodyHash(f *testing.F) {
	for _, b := range []string{"", "\r\n", "a \t b  \r\n\r\n\r\n", "x\r\r\ny\n\n", " \t\r\n \r\nz", "no end"} {
		f.Add(b, uint8(3))
	}
	k, _ := keysForTest(f)
	f.Fuzz(func(t *testing.T, body string, piece uint8) {
		msg := "From: a@example.com\r\n\r\n" + body
		d := newDigest()
		n := int(piece) + 1
		for rest := msg; len(rest) > 0; {
			c := min(len(rest), n)
			d.Write([]byte(rest[:c]))
			rest = rest[c:]
		}
		if got, want := base64.StdEncoding.EncodeToString(d.bodyHash()), goMsgauthBodyHash(t, msg, k); got != want {
			t.Fatalf("body hash %s, go-msgauth's %s\n%q", got, want, body)
		}
	})
}
