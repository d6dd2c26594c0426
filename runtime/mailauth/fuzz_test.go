package mailauth

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx/24//64 ptr ~all",
		"v=spf1 include:_spf.example.com exists:%{ir}.%{v}._spf.%{d2} ?all",
		"v=spf1 a:%{l1r-}.lp.%{d}/24 redirect=%{o} exp=%{c}.x.test",
		"v=spf1 exists:%{S}%%%_%-.%{h}. unknown=%{d}",
		"v=spf1 mx:example.com//0 -a:x.test/0",
		"V=SPF1 +ALL",
		"v=spf1 exists:%{d999r+-.,/_=}.test",
	} {
		f.Add(s)
	}
	checkers := []*spfChecker{
		{ip: netip.MustParseAddr("192.0.2.3"), sender: "a-b@c.example.test", local: "a-b", senderDomain: "c.example.test", helo: "h.test"},
		{ip: netip.MustParseAddr("2001:db8::1"), sender: "postmaster@h.test", local: "postmaster", senderDomain: "h.test", helo: "h.test"},
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := parseSPF(s)
		if err != nil {
			return
		}
		var specs []*macroString
		for _, d := range rec.directives {
			_ = d.String()
			if d.domain != nil {
				specs = append(specs, d.domain)
			}
			if (d.mechanism == "ip4") != d.prefix.Addr().Is4() && (d.mechanism == "ip4" || d.mechanism == "ip6") {
				t.Fatalf("%s holds %v", d.mechanism, d.prefix)
			}
		}
		if rec.redirect != nil {
			specs = append(specs, rec.redirect)
		}
		for _, c := range checkers {
			for _, ms := range specs {
				checkExpansion(t, c.expand(ms, "example.test"))
			}
		}
	})
}

// FuzzExpand expands domain-specs with hostile identities.
func FuzzExpand(f *testing.F) {
	f.Add("%{l}.%{o}", "strong-bad", "email.example.com", "mx.example.org")
	f.Add("%{L}.%{h}.x.test", "a b\"c", "x", "")
	f.Add("%{l1r-}.%{ir}.%{v}.%{d2}", strings.Repeat("a.", 200), "e.test", "h")
	f.Fuzz(func(t *testing.T, spec, local, domain, helo string) {
		ms, err := parseDomainSpec(spec)
		if err != nil {
			return
		}
		c := &spfChecker{ip: netip.MustParseAddr("192.0.2.3"), local: local, senderDomain: domain,
			sender: local + "@" + domain, helo: helo}
		checkExpansion(t, c.expand(ms, domain))
	})
}

// checkExpansion: a result over 253 characters is cut on label
// boundaries, so only a single huge label can stay longer.
func checkExpansion(t *testing.T, s string) {
	t.Helper()
	if len(strings.TrimSuffix(s, ".")) > 253 && strings.Contains(strings.TrimSuffix(s, "."), ".") {
		t.Fatalf("expansion of %d characters: %q", len(s), s)
	}
	if len(s) > 2048 {
		t.Fatalf("expansion unbounded: %d characters", len(s))
	}
}

func FuzzAuthservID(f *testing.F) {
	f.Add(" mx.box.test; spf=pass", "mx.box.test")
	f.Add(` (x (y) \) z) "m\"x" 1; none`, `m"x`)
	f.Fuzz(func(t *testing.T, value, id string) {
		got, ok := parseAuthservID(value)
		if ok && got == "" {
			t.Fatalf("empty id accepted from %q", value)
		}
		trim := func(s string) string { return strings.TrimSuffix(s, ".") }
		if IsOurs(value, id) && (!ok || trim(got) == "" || !strings.EqualFold(trim(got), trim(id))) {
			t.Fatalf("IsOurs(%q, %q) without a match", value, id)
		}
		if ok && trim(got) != "" && (!IsOurs(value, got) || !IsOurs(value, trim(got)+".")) {
			t.Fatalf("IsOurs(%q, ...) misses its own id %q", value, got)
		}
	})
}

func FuzzHeader(f *testing.F) {
	f.Add([]byte("From: Alice <alice@example.test>\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("From: a@b.test, c@d.test\n\tmore\nX: y\n\n"))
	f.Add([]byte(" leading\r\nFrom: =?utf-8?B?w6k=?= <a@b.test>\r\n"))
	f.Add([]byte("From: \"unterminated <a@b.test>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, rest := splitHeader(msg)
		var whole []byte
		for _, fl := range fields {
			whole = append(whole, fl.raw...)
		}
		whole = append(whole, rest...)
		if !bytes.Equal(whole, msg) {
			t.Fatalf("fields and rest do not rebuild the message")
		}
		if d, err := fromDomain(fields); err == nil && !isSPFDomain(d) {
			t.Fatalf("From domain %q", d)
		}
	})
}

func FuzzUnescapeTXT(f *testing.F) {
	f.Add(`a\"b\\c\255d\`)
	f.Fuzz(func(t *testing.T, s string) {
		got := unescapeTXT(s)
		if len(got) > len(s) {
			t.Fatalf("unescaping grew %q to %q", s, got)
		}
		if !strings.Contains(s, `\`) && got != s {
			t.Fatalf("changed %q to %q", s, got)
		}
	})
}

// FuzzFormat: whatever the identities and reasons, the output is one
// well-formed header field.
func FuzzFormat(f *testing.F) {
	f.Add("mx.box.test", "a@b.test", "reason (x)", "b.test", "@b.test")
	f.Add("mx\r\nX: y", "\"a b\"@c.test", "\\;)", "d\r\ne", "")
	f.Fuzz(func(t *testing.T, id, sender, reason, domain, ident string) {
		res := results{
			spf:   spfOutcome{result: resFail, identity: "mailfrom", sender: sender, reason: reason},
			dkim:  []dkimOutcome{{result: resPass, domain: domain, identifier: ident, reason: reason}},
			dmarc: dmarcOutcome{result: resFail, fromDomain: domain, policy: "reject"},
		}
		field := formatResults(id, res)
		checkField(t, field)
		// IsOurs recognises what we write.
		clean := strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\uFFFD' }) < 0
		if _, value, _ := strings.Cut(field, ":"); clean && id != "" && !IsOurs(value, id) {
			t.Fatalf("IsOurs does not know %q in %q", id, field)
		}
	})
}

// FuzzVerify runs whole messages through Verify against a real DNS server.
func FuzzVerify(f *testing.F) {
	z := startDNS(f,
		`example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
		`_dmarc.example.test. TXT "v=DMARC1; p=reject"`,
		`s._domainkey.example.test. TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`,
	)
	v := NewVerifier(NewResolver([]string{z.Addr}, 2*time.Second), 5*time.Second, nil)
	f.Add([]byte(message("alice@example.test")))
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; d=example.test; s=s; h=from; bh=; b=\r\nFrom: a@example.test\r\n\r\n"))
	f.Add([]byte("From: a@example.test\nDKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s; h=From:Subject; bh=AAAA; b=AAAA; l=5\n\nx"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		in := Input{AuthservID: "mx.box.test", RemoteIP: netip.MustParseAddr("192.0.2.1"), HELO: "h.test", MailFrom: "a@example.test"}
		checkField(t, v.Verify(t.Context(), in, bytes.NewReader(msg)))
	})
}
