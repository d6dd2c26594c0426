package smtpd

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
)

// FuzzForgedAuthResults checks the header scanner on any input: the
// ranges it drops are whole fields, in order, within the header, each an
// Authentication-Results field of the id; after they are removed none is
// left.
func FuzzForgedAuthResults(f *testing.F) {
	for _, s := range []string{
		"Authentication-Results: mx.example.test; spf=pass\r\nSubject: x\r\n\r\nbody",
		"authentication-results : (c (d) \\) e) \"MX.example.test\" 1;\r\n\tdkim=pass\r\n\r\n",
		"A: 1\nAuthentication-Results:mx.example.test\n b\n\nbody\n",
		"Authentication-Results: \"mx.example.test",
		"\r\n",
		"",
	} {
		f.Add([]byte(s), "mx.example.test")
	}
	f.Fuzz(func(t *testing.T, msg []byte, id string) {
		end, _ := headerEnd(msg)
		if end < 0 || end > len(msg) {
			t.Fatalf("headerEnd %d out of [0, %d]", end, len(msg))
		}
		hdr := msg[:end]
		drop := forgedAuthResults(hdr, id)
		prev := 0
		var kept []byte
		for _, r := range drop {
			if r[0] < prev || r[1] <= r[0] || r[1] > len(hdr) {
				t.Fatalf("bad range %v after %d in %d bytes", r, prev, len(hdr))
			}
			if r[0] > 0 && hdr[r[0]-1] != '\n' {
				t.Fatalf("range %v does not start a line", r)
			}
			if !isAuthResultsOf(hdr[r[0]:r[1]], id) {
				t.Fatalf("dropped %q, not an Authentication-Results of %q", hdr[r[0]:r[1]], id)
			}
			kept = append(kept, hdr[prev:r[0]]...)
			prev = r[1]
		}
		kept = append(kept, hdr[prev:]...)
		if again := forgedAuthResults(kept, id); len(again) != 0 {
			t.Fatalf("fields left after stripping %q: %v", kept, again)
		}
		if len(drop) > 0 && !strings.Contains(strings.ToLower(string(hdr)), "authentication-results") {
			t.Fatal("dropped something without an Authentication-Results field")
		}
	})
}

// FuzzAddress checks the handling of envelope addresses and EHLO
// arguments: splitting, and what goes into the trace fields.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{"SRS0=abcd=JX=remote.test=x@example.test", "srs1+y@x", "alice@example.test", "John Doe@x.test", `a"b\c@x`, "a@b@c.", "@", "", "é@x", "a\x00b@c", "<a>@b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if local, domain, ok := splitAddress(addr); ok {
			if local == "" || domain == "" || strings.Contains(domain, "@") || local != strings.ToLower(local) || domain != strings.ToLower(domain) {
				t.Fatalf("splitAddress(%q) = %q, %q", addr, local, domain)
			}
			// An SRS address is a tag, then a separator.
			tagged := len(local) > 4 && (strings.HasPrefix(local, "srs0") || strings.HasPrefix(local, "srs1")) && strings.ContainsRune("=+-", rune(local[4]))
			if srsTagged(local) != tagged {
				t.Fatalf("srsTagged(%q) = %v", local, !tagged)
			}
		}
		p := formatPath(addr)
		for i := 0; i < len(p); i++ {
			if p[i] < ' ' || p[i] == 0x7f || p[i] == '>' && !strings.Contains(p, `"`) {
				t.Fatalf("formatPath(%q) = %q: byte %q", addr, p, p[i])
			}
		}
		if i := strings.LastIndexByte(addr, '@'); i >= 0 && isDotAtom(addr[:i]) && !strings.ContainsAny(addr[i:], "<> \x7f") && !hasCTL(addr) {
			if p != addr {
				t.Fatalf("formatPath(%q) = %q, want it unchanged", addr, p)
			}
		}
		if r := safeForClause(addr); r != "" && r != addr {
			t.Fatalf("safeForClause(%q) = %q", addr, r)
		}
		h := cleanHelo(addr)
		if len(h) > 255 || strings.ContainsAny(h, "()<>;\\\" \t\r\n") {
			t.Fatalf("cleanHelo(%q) = %q", addr, h)
		}
		var b []byte
		b = appendReturnPath(b, addr)
		if bytes.Count(b, []byte("\r\n")) != 1 || !bytes.HasSuffix(b, []byte(">\r\n")) || bytes.IndexByte(b[:len(b)-2], '\n') >= 0 {
			t.Fatalf("Return-Path of %q: %q", addr, b)
		}
	})
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// FuzzFromAddresses checks the From field parser on any header section:
// what it accepts holds one From field (a second one is refused), and a
// From field written by net/mail, folded or not, gives its address back.
func FuzzFromAddresses(f *testing.F) {
	for _, s := range []string{
		"From: Alice <alice@example.test>\r\nSubject: x\r\n\r\n",
		"from : \"A \\\"B\\\"\" <a@b.test>, G: c@d.test, e@f.test;\r\n",
		"X: y\r\n From: a@b.test\r\nFrom: =?utf-8?q?=C3=A9?= <c@d.test> (c)\n\n",
		"From: undisclosed:;\r\nFrom\r\n",
		"",
	} {
		f.Add([]byte(s), "Alice Liddell", "alice@example.test")
	}
	f.Add([]byte("Subject: x\r\n"), "é \"q\"", `"a b"@c.test`)
	f.Fuzz(func(t *testing.T, hdr []byte, name, addr string) {
		addrs, err := fromAddresses(hdr)
		if err == nil {
			if len(addrs) == 0 {
				t.Fatalf("%q: no address and no error", hdr)
			}
			for _, a := range addrs {
				if !strings.Contains(a, "@") {
					t.Fatalf("%q: address %q", hdr, a)
				}
			}
			if len(hdr) > 0 && hdr[0] != ' ' && hdr[0] != '\t' {
				if _, err := fromAddresses(append([]byte("From: a@b.test\r\n"), hdr...)); err != errSeveralFrom {
					t.Fatalf("%q with a second From field: %v", hdr, err)
				}
			}
		}
		if strings.ContainsAny(name+addr, "\r\n") {
			return
		}
		field := (&mail.Address{Name: name, Address: addr}).String()
		want, err := mail.ParseAddress(field)
		if err != nil {
			return
		}
		for _, v := range []string{field, strings.Replace(field, " ", "\r\n ", 1)} {
			got, err := fromAddresses([]byte("Subject: x\r\nFrom: " + v + "\r\n\r\n"))
			if err != nil || len(got) != 1 || got[0] != want.Address {
				t.Fatalf("From: %q gives %q, %v; want %q", v, got, err, want.Address)
			}
		}
	})
}
