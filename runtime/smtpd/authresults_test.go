package smtpd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/mailauth"
)

// TestAuthenticationResults runs the real mailauth Verifier behind the
// MX, against a real DNS server, and reads the Authentication-Results
// field of the delivered messages.
func TestAuthenticationResults(t *testing.T) {
	t.Parallel()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := dnstest.New(t,
		`example.test. 60 TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`sel._domainkey.example.test. 60 TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`,
		`_dmarc.example.test. 60 TXT "v=DMARC1; p=reject"`,
		`bad.test. 60 TXT "v=spf1 -all"`,
		`_dmarc.bad.test. 60 TXT "v=DMARC1; p=quarantine"`,
	).Addr()
	v := mailauth.NewVerifier(mailauth.NewResolver([]string{dnsAddr}, time.Second), 10*time.Second, nil)
	e := newEnv(t, func(c *Config) {
		c.Verifier = v
		c.VerifyLoopback = true
	})

	sign := func(msg string) string {
		var b bytes.Buffer
		if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
			Domain: "example.test", Selector: "sel", Signer: key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	// body is a message from From, told from the others by its subject.
	body := func(from, subject string) string {
		return "From: " + from + "\r\nTo: bob@example.test\r\nSubject: " + subject + "\r\n" +
			"Date: Mon, 02 Jan 2026 15:04:05 +0000\r\nMessage-ID: <" + subject + "@test>\r\n\r\nHello.\r\n"
	}

	for _, c := range []struct {
		name     string
		mailFrom string
		msg      string
		// want are the results by method; dkimDomain the header.d of
		// the DKIM result; foreign the Authentication-Results fields of
		// other hosts that must stay, after ours.
		want       map[string]authres.ResultValue
		dkimDomain string
		foreign    []string
	}{
		{
			name:       "aligned and signed",
			mailFrom:   "alice@example.test",
			msg:        sign(body("Alice <alice@example.test>", "signed")),
			want:       map[string]authres.ResultValue{"spf": authres.ResultPass, "dkim": authres.ResultPass, "dmarc": authres.ResultPass},
			dkimDomain: "example.test",
		},
		{
			name:     "signed, altered on the way",
			mailFrom: "alice@example.test",
			msg:      strings.Replace(sign(body("Alice <alice@example.test>", "altered")), "Hello.", "Hullo.", 1),
			// SPF still passes and aligns: DMARC passes on it alone.
			want:       map[string]authres.ResultValue{"spf": authres.ResultPass, "dkim": authres.ResultFail, "dmarc": authres.ResultPass},
			dkimDomain: "example.test",
		},
		{
			name:     "unsigned from a domain that allows no host",
			mailFrom: "x@bad.test",
			msg:      body("x@bad.test", "bad"),
			want:     map[string]authres.ResultValue{"spf": authres.ResultFail, "dkim": authres.ResultNone, "dmarc": authres.ResultFail},
		},
		{
			name:     "forged results of this host",
			mailFrom: "x@bad.test",
			msg: "Authentication-Results: " + testHost + "; spf=pass smtp.mailfrom=bad.test\r\n" +
				"Authentication-Results: " + strings.ToUpper(testHost) + ";\r\n\tdkim=pass header.d=bad.test;\r\n\tdmarc=pass\r\n" +
				body("x@bad.test", "forged"),
			want: map[string]authres.ResultValue{"spf": authres.ResultFail, "dkim": authres.ResultNone, "dmarc": authres.ResultFail},
		},
		{
			name:     "results of another host are kept",
			mailFrom: "x@bad.test",
			msg:      "Authentication-Results: relay.other.test; spf=pass smtp.mailfrom=bad.test\r\n" + body("x@bad.test", "foreign"),
			want:     map[string]authres.ResultValue{"spf": authres.ResultFail, "dkim": authres.ResultNone, "dmarc": authres.ResultFail},
			foreign:  []string{"relay.other.test; spf=pass smtp.mailfrom=bad.test"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := e.client(e.mx, plain)
			if err := send(cl, c.mailFrom, []string{"bob@example.test"}, c.msg); err != nil {
				t.Fatal(err)
			}
			cl.Quit()
			// The message as sent, but for the forged fields.
			sent := c.msg[strings.Index(c.msg, "From: "):]
			if len(c.foreign) > 0 {
				sent = c.msg
			}
			var got string
			for _, m := range e.mailbox("example.test", "bob") {
				if strings.HasSuffix(m, "\r\n"+sent) {
					got = m
				}
			}
			if got == "" {
				t.Fatalf("no message in the mailbox ends with\n%s", sent)
			}

			// Return-Path, then our field, then Received.
			rp, rest, _ := strings.Cut(got, "\r\n")
			if !strings.HasPrefix(rp, "Return-Path: <"+c.mailFrom+">") || !strings.HasPrefix(rest, "Authentication-Results: "+testHost+";") {
				t.Fatalf("message does not start with Return-Path and our Authentication-Results:\n%s", got)
			}
			if i, j := strings.Index(rest, "\r\nReceived: from "), strings.Index(rest, "\r\nSubject: "); i < 0 || j < i {
				t.Errorf("no Received field after Authentication-Results:\n%s", got)
			}
			m, err := mail.ReadMessage(strings.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			fields := m.Header["Authentication-Results"]
			if len(fields) != 1+len(c.foreign) {
				t.Fatalf("%d Authentication-Results fields, want ours and %d others:\n%s", len(fields), len(c.foreign), got)
			}
			for i, f := range c.foreign {
				if fields[1+i] != f {
					t.Errorf("foreign field %q, want %q kept", fields[1+i], f)
				}
			}
			id, results, err := authres.Parse(fields[0])
			if err != nil || id != testHost {
				t.Fatalf("our field %q: authserv-id %q, %v", fields[0], id, err)
			}
			seen := map[string]authres.ResultValue{}
			for _, r := range results {
				switch r := r.(type) {
				case *authres.SPFResult:
					seen["spf"] = r.Value
					if wantFrom := c.mailFrom; r.From != wantFrom {
						t.Errorf("spf smtp.mailfrom=%q, want %q", r.From, wantFrom)
					}
				case *authres.DKIMResult:
					seen["dkim"] = r.Value
					if r.Domain != c.dkimDomain {
						t.Errorf("dkim header.d=%q, want %q", r.Domain, c.dkimDomain)
					}
				case *authres.DMARCResult:
					seen["dmarc"] = r.Value
				}
			}
			for method, want := range c.want {
				if seen[method] != want {
					t.Errorf("%s=%s, want %s, in\n%s", method, seen[method], want, fields[0])
				}
			}
		})
	}
}
