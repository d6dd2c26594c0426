package main

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
)

// zoneTXT is one TXT record line of `dkim show`.
var zoneTXT = regexp.MustCompile(`^(mf[0-9]{8}[er])\._domainkey\.a\.example\. IN TXT((?: "[^"]{1,255}")+)$`)

// TestDKIMShow: after an apply, `mfapply dkim show` prints the records of
// the keys the mail reconciler made, in zone syntax and in JSON, and a
// message the box signs verifies against the records as printed.
func TestDKIMShow(t *testing.T) {
	e := newEnv(t)
	r := e.run("", "dkim", "show", "a.example")
	e.expect(r, 1, "no DKIM keys for a.example", "apply a document with that domain first")

	r = e.run("", "apply", "-f", e.file("v1.yaml", docV1), "--yes")
	e.expect(r, 0, "+ dkim keys of a.example (ed25519 and RSA-2048", "applied: version 1")

	r = e.run("", "dkim", "show", "a.example")
	e.expect(r, 0, "; DKIM keys of a.example")
	published := map[string]string{}
	var selectors []string
	for _, line := range lines(r.stdout)[1:] {
		m := zoneTXT.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a zone TXT record: %q\n%s", line, r)
		}
		selectors = append(selectors, m[1])
		value := strings.ReplaceAll(strings.Trim(strings.TrimSpace(m[2]), `"`), `" "`, "")
		published[m[1]+"._domainkey.a.example"] = value
	}
	if len(selectors) != 2 || !strings.HasSuffix(selectors[0], "e") || !strings.HasSuffix(selectors[1], "r") {
		t.Fatalf("selectors %v, want the ed25519 then the RSA key", selectors)
	}

	// What the outbound queue signs verifies against what was printed.
	fields, err := dkimsign.NewSigner(dkimsign.Dir(e.data)).Sign(func(w io.Writer) error {
		_, err := io.WriteString(w, "From: bob@a.example\r\nTo: x@example.net\r\nSubject: hi\r\n\r\nHello.\r\n")
		return err
	})
	if err != nil || fields == nil {
		t.Fatalf("Sign = %q, %v", fields, err)
	}
	signed := append(fields, "From: bob@a.example\r\nTo: x@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"...)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if v, ok := published[strings.TrimSuffix(name, ".")]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("no record " + name)
	}})
	if err != nil || len(vs) != 2 {
		t.Fatalf("verify: %d signatures, %v", len(vs), err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}

	// --json, the domain as a person may type it.
	r = e.run("", "dkim", "show", "A.Example.", "--json")
	e.expect(r, 0)
	var out struct {
		Domain  string       `json:"domain"`
		Records []dkimRecord `json:"records"`
	}
	decodeJSON(t, r, &out)
	if out.Domain != "a.example" || len(out.Records) != 2 {
		t.Fatalf("dkim show --json: %s", r)
	}
	for i, rec := range out.Records {
		want := map[int]string{0: "ed25519", 1: "rsa"}[i]
		if rec.Type != "TXT" || rec.Algorithm != want || !rec.Signing || rec.Selector != selectors[i] ||
			published[rec.Name] != rec.Value || strings.Join(rec.Strings, "") != rec.Value {
			t.Errorf("record %d: %+v", i, rec)
		}
	}

	// Errors: as other mfapply errors, exit 1, in JSON with --json.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dkim", "show", "b.example"}, "mfapply dkim: no DKIM keys for b.example"},
		{[]string{"dkim", "show", "../../etc"}, "is not a domain name"},
		{[]string{"dkim"}, "missing argument"},
		{[]string{"dkim", "show"}, "dkim show takes one DOMAIN"},
		{[]string{"dkim", "rotate", "a.example"}, `unknown dkim command "rotate"`},
	} {
		e.expect(e.run("", tc.args...), 1, tc.want)
	}
	r = e.run("", "dkim", "show", "b.example", "--json")
	e.expect(r, 1)
	var je struct {
		Error string `json:"error"`
	}
	decodeJSON(t, r, &je)
	if !strings.Contains(je.Error, "no DKIM keys for b.example") {
		t.Errorf("--json error: %s", r)
	}
}
