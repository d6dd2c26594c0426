package dkimsign

import (
	"bytes"
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
