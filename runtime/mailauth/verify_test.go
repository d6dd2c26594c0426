package mailauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
)

// dkimKeyRecord is the TXT record publishing pub, cut into strings of at
// most 255 bytes as DNS requires.
func dkimKeyRecord(t testing.TB, name string, pub crypto.PublicKey) string {
	t.Helper()
	var txt string
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		txt = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	var parts []string
	for len(txt) > 0 {
		n := min(len(txt), 200)
		parts = append(parts, `"`+txt[:n]+`"`)
		txt = txt[n:]
	}
	return name + " TXT " + strings.Join(parts, " ")
}

func sign(t testing.TB, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func message(from string) string {
	return "From: " + from + "\r\n" +
		"To: bob@box.test\r\n" +
		"Subject: hello\r\n" +
		"Date: Mon, 02 Jan 2026 15:04:05 +0000\r\n" +
		"Message-ID: <1@example.test>\r\n" +
		"\r\n" +
		"Hello Bob.\r\n"
}

type authEnv struct {
	z      *testDNS
	v      *Verifier
	ed     ed25519.PrivateKey
	rsaKey *rsa.PrivateKey
	other  ed25519.PrivateKey // signs for other.test
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, unpublished, _ := ed25519.GenerateKey(rand.Reader)
	z := startDNS(t,
		dkimKeyRecord(t, "ed._domainkey.example.test.", ed.Public()),
		dkimKeyRecord(t, "rsa._domainkey.example.test.", rk.Public()),
		dkimKeyRecord(t, "wrong._domainkey.example.test.", unpublished.Public()),
		dkimKeyRecord(t, "sel._domainkey.other.test.", other.Public()),
		`example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`bounce.example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`other.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`_dmarc.example.test. TXT "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r"`,
		`strict.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`bounce.strict.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`_dmarc.strict.test. TXT "v=DMARC1; p=quarantine; aspf=s; adkim=s"`,
		`nodmarc.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`_dmarc.bad.test. TXT "v=DMARC1; p=bogus"`,
		`_dmarc.twice.test. TXT "v=DMARC1; p=none"`,
		`_dmarc.twice.test. TXT "v=DMARC1; p=reject"`,
		`_dmarc.mixed.test. TXT "some other text"`,
		`_dmarc.mixed.test. TXT "v=DMARC1; p=none"`,
	)
	z.servfail("_dmarc.tempfail.test", "sf._domainkey.example.test")
	r := NewResolver([]string{z.Addr}, 2*time.Second)
	return &authEnv{z: z, v: NewVerifier(r, 5*time.Second, nil), ed: ed, rsaKey: rk, other: other}
}

func TestVerifyDKIM(t *testing.T) {
	env := newAuthEnv(t)
	in := Input{AuthservID: "mx.box.test", RemoteIP: netip.MustParseAddr("203.0.113.9"), HELO: "client.test", MailFrom: "x@nowhere.test"}
	plain := message("Alice <alice@example.test>")
	edSigned := sign(t, plain, "example.test", "ed", env.ed)

	type want struct {
		result authres.ResultValue
		domain string
	}
	cases := []struct {
		name string
		msg  string
		want []want
	}{
		{"ed25519 pass", edSigned, []want{{resPass, "example.test"}}},
		{"rsa-2048 pass (key in several strings)", sign(t, plain, "example.test", "rsa", env.rsaKey), []want{{resPass, "example.test"}}},
		{"body modified", strings.Replace(edSigned, "Hello Bob.", "Hello Eve.", 1), []want{{resFail, "example.test"}}},
		{"signed header modified", strings.Replace(edSigned, "Subject: hello", "Subject: HELLO!", 1), []want{{resFail, "example.test"}}},
		{"no signature", plain, nil},
		{"key not published", sign(t, plain, "example.test", "missing", env.ed), []want{{resPermError, "example.test"}}},
		{"key of another pair", sign(t, plain, "example.test", "wrong", env.ed), []want{{resFail, "example.test"}}},
		{"key lookup SERVFAIL", sign(t, plain, "example.test", "sf", env.ed), []want{{resTempError, "example.test"}}},
		{"two signatures", sign(t, edSigned, "other.test", "sel", env.other), []want{{resPass, "other.test"}, {resPass, "example.test"}}},
		{"LF line ends", strings.ReplaceAll(edSigned, "\r\n", "\n"), []want{{resPass, "example.test"}}},
		{"header only, no blank line", strings.TrimSuffix(sign(t, "From: alice@example.test\r\nSubject: x\r\n\r\n", "example.test", "ed", env.ed), "\r\n"), []want{{resPass, "example.test"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := env.v.verify(t.Context(), in, strings.NewReader(c.msg))
			if len(res.dkim) != len(c.want) {
				t.Fatalf("got %+v, want %+v", res.dkim, c.want)
			}
			for i, w := range c.want {
				if res.dkim[i].result != w.result || res.dkim[i].domain != w.domain {
					t.Fatalf("signature %d: got %+v, want %+v", i, res.dkim[i], w)
				}
			}
			hdr := formatResults(in.AuthservID, res)
			if len(c.want) == 0 && !strings.Contains(hdr, "dkim=none") {
				t.Fatalf("header lacks dkim=none:\n%s", hdr)
			}
			for _, w := range c.want {
				if !strings.Contains(hdr, "dkim="+string(w.result)+" ") || !strings.Contains(hdr, "header.d="+w.domain) {
					t.Fatalf("header lacks %+v:\n%s", w, hdr)
				}
			}
		})
	}
}

func TestVerifyDMARC(t *testing.T) {
	env := newAuthEnv(t)
	good := netip.MustParseAddr("192.0.2.10")
	bad := netip.MustParseAddr("203.0.113.9")
	signedBy := func(from, domain, sel string, key crypto.Signer) string {
		return sign(t, message(from), domain, sel, key)
	}

	cases := []struct {
		name    string
		ip      netip.Addr
		from    string // MAIL FROM
		msg     string
		want    authres.ResultValue
		comment string // expected DMARC comment
		domain  string // expected header.from
	}{
		{"aligned DKIM", bad, "x@nowhere.test", signedBy("alice@example.test", "example.test", "ed", env.ed), resPass, "p=reject", "example.test"},
		{"aligned SPF, relaxed subdomain", good, "b@bounce.example.test", message("alice@example.test"), resPass, "p=reject", "example.test"},
		{"misaligned: other domain passes", good, "b@other.test", signedBy("alice@example.test", "other.test", "sel", env.other), resFail, "p=reject", "example.test"},
		{"SPF fail, no DKIM", bad, "b@example.test", message("alice@example.test"), resFail, "p=reject", "example.test"},
		{"DKIM fails", bad, "x@nowhere.test", strings.Replace(signedBy("alice@example.test", "example.test", "ed", env.ed), "Bob.", "Eve.", 1), resFail, "p=reject", "example.test"},
		{"strict SPF: subdomain not aligned", good, "b@bounce.strict.test", message("alice@strict.test"), resFail, "p=quarantine", "strict.test"},
		{"strict SPF: exact domain aligned", good, "b@strict.test", message("alice@strict.test"), resPass, "p=quarantine", "strict.test"},
		{"no record", good, "b@nodmarc.test", message("alice@nodmarc.test"), resNone, "no DMARC record", "nodmarc.test"},
		{"subdomain uses the organisational record", bad, "x@nowhere.test", message("news@news.example.test"), resFail, "p=reject sp=quarantine", "news.example.test"},
		{"subdomain aligned by organisational DKIM", bad, "x@nowhere.test", signedBy("news@news.example.test", "example.test", "ed", env.ed), resPass, "p=reject sp=quarantine", "news.example.test"},
		{"From domain case folded", good, "b@example.test", message("Alice <Alice@EXAMPLE.Test>"), resPass, "p=reject", "example.test"},
		{"temperror", good, "b@example.test", message("alice@tempfail.test"), resTempError, "SERVFAIL", "tempfail.test"},
		{"malformed record", good, "b@example.test", message("alice@bad.test"), resPermError, "DMARC record", "bad.test"},
		{"two records", good, "b@example.test", message("alice@twice.test"), resPermError, "several", "twice.test"},
		{"non-DMARC TXT ignored", good, "b@example.test", message("alice@mixed.test"), resFail, "p=none", "mixed.test"},
		{"no From", good, "b@example.test", "Subject: x\r\n\r\nbody\r\n", resPermError, "no From", ""},
		{"two From fields", good, "b@example.test", "From: a@example.test\r\nFrom: b@example.test\r\n\r\nbody\r\n", resPermError, "several From", ""},
		{"two addresses", good, "b@example.test", message("a@example.test, b@example.test"), resPermError, "several addresses", ""},
		{"unparsable From", good, "b@example.test", message("<<<"), resPermError, "unparsable", ""},
		{"null MAIL FROM uses HELO", good, "", message("alice@example.test"), resPass, "p=reject", "example.test"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := Input{AuthservID: "mx.box.test", RemoteIP: c.ip, HELO: "bounce.example.test", MailFrom: c.from}
			res := env.v.verify(t.Context(), in, strings.NewReader(c.msg))
			d := res.dmarc
			if d.result != c.want || d.fromDomain != c.domain {
				t.Fatalf("got %+v (spf %+v, dkim %+v), want %s for %q", d, res.spf, res.dkim, c.want, c.domain)
			}
			hdr := formatResults(in.AuthservID, res)
			_, line, _ := strings.Cut(hdr, "\tdmarc=")
			if !strings.HasPrefix(line, string(c.want)+" (") || !strings.Contains(line, c.comment) ||
				strings.HasPrefix(c.comment, "p=") && !strings.HasPrefix(line, string(c.want)+" ("+c.comment+")") {
				t.Fatalf("header lacks dmarc=%s (%s...):\n%s", c.want, c.comment, hdr)
			}
			if c.domain != "" && !strings.HasSuffix(hdr, " header.from="+c.domain+"\r\n") {
				t.Fatalf("header lacks header.from=%s:\n%s", c.domain, hdr)
			}
		})
	}
}

func TestVerifyHeader(t *testing.T) {
	env := newAuthEnv(t)
	msg := sign(t, message("Alice <alice@example.test>"), "example.test", "ed", env.ed)
	in := Input{AuthservID: "mx.box.test", RemoteIP: netip.MustParseAddr("192.0.2.10"), HELO: "out.example.test", MailFrom: "alice@example.test"}
	got := env.v.Verify(t.Context(), in, strings.NewReader(msg))
	want := "Authentication-Results: mx.box.test;\r\n" +
		"\tspf=pass (192.0.2.10 matched ip4:192.0.2.0/24 in the SPF record of example.test) smtp.mailfrom=alice@example.test;\r\n" +
		"\tdkim=pass header.d=example.test header.i=@example.test;\r\n" +
		"\tdmarc=pass (p=reject) header.from=example.test\r\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}

	// The field parses back, with the authserv-id that IsOurs knows.
	name, value, ok := strings.Cut(strings.TrimSuffix(unfold(got), "\r\n"), ":")
	if !ok || name != "Authentication-Results" {
		t.Fatalf("field %q", got)
	}
	id, rs, err := authres.Parse(value)
	if err != nil || id != "mx.box.test" || len(rs) != 3 {
		t.Fatalf("authres.Parse: %q %v %v", id, rs, err)
	}
	if spf, ok := rs[0].(*authres.SPFResult); !ok || spf.Value != authres.ResultPass || spf.From != "alice@example.test" {
		t.Fatalf("spf %+v", rs[0])
	}
	if dk, ok := rs[1].(*authres.DKIMResult); !ok || dk.Value != authres.ResultPass || dk.Domain != "example.test" {
		t.Fatalf("dkim %+v", rs[1])
	}
	if dm, ok := rs[2].(*authres.DMARCResult); !ok || dm.Value != authres.ResultPass || dm.From != "example.test" {
		t.Fatalf("dmarc %+v", rs[2])
	}
	if !IsOurs(value, "MX.box.test") {
		t.Fatal("IsOurs does not know our own field")
	}

	// Null reverse-path: the HELO identity is reported.
	in.MailFrom, in.HELO = "", "example.test"
	got = env.v.Verify(t.Context(), in, strings.NewReader(msg))
	if !strings.Contains(got, "\tspf=pass (") || !strings.Contains(got, " smtp.helo=example.test;\r\n") {
		t.Fatalf("HELO identity:\n%s", got)
	}
}

// TestVerifyConcurrent proves calls run side by side: 20 messages against
// a DNS server taking 100 ms per answer finish in far less than 20 times
// one message's time.
func TestVerifyConcurrent(t *testing.T) {
	env := newAuthEnv(t)
	msg := sign(t, message("alice@example.test"), "example.test", "ed", env.ed)
	in := Input{AuthservID: "mx.box.test", RemoteIP: netip.MustParseAddr("192.0.2.10"), HELO: "h.test", MailFrom: "a@example.test"}

	env.z.mu.Lock()
	env.z.delay = 100 * time.Millisecond
	env.z.mu.Unlock()

	start := time.Now()
	if got := env.v.Verify(t.Context(), in, strings.NewReader(msg)); !strings.Contains(got, "dmarc=pass") {
		t.Fatalf("single: %s", got)
	}
	one := time.Since(start)

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start = time.Now()
	for range n {
		wg.Go(func() {
			got := env.v.Verify(t.Context(), in, strings.NewReader(msg))
			if !strings.Contains(got, "spf=pass") || !strings.Contains(got, "dkim=pass") || !strings.Contains(got, "dmarc=pass") {
				errs <- got
			}
		})
	}
	wg.Wait()
	all := time.Since(start)
	close(errs)
	for e := range errs {
		t.Fatalf("concurrent result:\n%s", e)
	}
	t.Logf("one Verify %v; %d concurrent %v", one, n, all)
	// Serialised calls would take n*one at least.
	if all > n*one/2 {
		t.Fatalf("%d concurrent calls took %v, one took %v: calls are serialised", n, all, one)
	}
}

// TestVerifyTimeout: a DNS server that never answers costs at most the
// verifier's timeout, and gives temperrors.
func TestVerifyTimeout(t *testing.T) {
	z := startDNS(t)
	z.mu.Lock()
	z.dropAll = true
	z.mu.Unlock()
	v := NewVerifier(NewResolver([]string{z.Addr}, 30*time.Second), 400*time.Millisecond, nil)
	in := Input{AuthservID: "mx.box.test", RemoteIP: netip.MustParseAddr("192.0.2.10"), HELO: "h.test", MailFrom: "a@example.test"}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	msg := sign(t, message("alice@example.test"), "example.test", "ed", key)

	start := time.Now()
	got := v.Verify(t.Context(), in, strings.NewReader(msg))
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Verify took %v", d)
	}
	for _, want := range []string{"spf=temperror", "dkim=temperror", "dmarc=temperror"} {
		if !strings.Contains(got, want) {
			t.Fatalf("lacks %s:\n%s", want, got)
		}
	}
}

func TestFormatResultsHostile(t *testing.T) {
	res := results{
		spf: spfOutcome{result: resPermError, identity: "mailfrom",
			sender: "\"we ird\\\"(x);\"@example.test\r\nX-Injected: 1",
			reason: "bad (record); with \\ and \r\n newline"},
		dkim:  []dkimOutcome{{result: resFail, domain: "evil.test\r\nX-Evil: 1", identifier: "@evil.test", reason: strings.Repeat("long ", 100)}},
		dmarc: dmarcOutcome{result: resPermError, reason: "no From field"},
	}
	got := formatResults("mx.box.test\r\nX-Bad: 1", res)
	checkField(t, got)
	if strings.Contains(got, "X-Injected: 1\r\n") || strings.Contains(got, "\nX-") {
		t.Fatalf("injection:\n%s", got)
	}
	if !strings.HasPrefix(got, `Authentication-Results: "mx.box.testX-Bad:1";`) {
		t.Fatalf("authserv-id not sanitised:\n%s", got)
	}
	if got := formatResults("", results{spf: spfOutcome{result: resNone, identity: "helo"}, dmarc: dmarcOutcome{result: resNone}}); !strings.HasPrefix(got, "Authentication-Results: localhost;\r\n\tspf=none;\r\n\tdkim=none;\r\n\tdmarc=none\r\n") {
		t.Fatalf("empty: %q", got)
	}
}

// checkField asserts s is one well-formed header field: CRLF line ends,
// continuation lines indented, comments balanced, lines under 998.
func checkField(t testing.TB, s string) {
	t.Helper()
	if !strings.HasSuffix(s, "\r\n") {
		t.Fatalf("not CRLF-terminated: %q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bare CR or LF in %q", l)
		}
		if i > 0 && (l == "" || (l[0] != '\t' && l[0] != ' ')) {
			t.Fatalf("line %d not a continuation: %q", i, l)
		}
		if len(l) > 998 {
			t.Fatalf("line %d has %d characters", i, len(l))
		}
	}
	if !strings.HasPrefix(s, "Authentication-Results: ") {
		t.Fatalf("bad name: %q", s)
	}
	// Outside quoted strings, parentheses balance.
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"' && depth == 0:
			quoted = !quoted
		case c == '(' && !quoted:
			depth++
		case c == ')' && !quoted:
			depth--
			if depth < 0 {
				t.Fatalf("unbalanced ) in %q", s)
			}
		}
	}
	if depth != 0 || quoted {
		t.Fatalf("unbalanced comment or quote in %q", s)
	}
}

func ExampleVerifier_Verify() {
	// In the SMTP server, per message:
	//   v := mailauth.NewVerifier(mailauth.NewResolver(nil, 0), 0, logger)
	//   field := v.Verify(ctx, mailauth.Input{AuthservID: settings.Hostname,
	//       RemoteIP: remote, HELO: helo, MailFrom: from}, bytes.NewReader(data))
	// and the fields of data for which IsOurs(value, settings.Hostname)
	// holds are forged: they go (smtpd's forgedAuthResults).
	fmt.Println(IsOurs(" mx.box.test; spf=pass smtp.mailfrom=a@example.test", "mx.box.test"))
	// Output: true
}
