package mtasts

import (
	"strings"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0")
	f.Add("version: STSv1\nmode: testing\nmx: *.a.b\nx: y\nmax_age: 31557600\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := ParsePolicy(body)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge*1e9 {
			t.Fatalf("max_age %v out of range", p.MaxAge)
		}
		if p.Mode != ModeNone && len(p.MX) == 0 {
			t.Fatal("a policy that is not mode none without mx")
		}
		for _, mx := range p.MX {
			if strings.ToLower(mx) != mx || strings.HasSuffix(mx, ".") {
				t.Fatalf("mx %q not normalised", mx)
			}
			host := strings.TrimPrefix(mx, "*.")
			if strings.HasPrefix(mx, "*.") {
				host = "x." + host
			}
			if !p.MatchMX(host) {
				t.Fatalf("mx %q does not match %q", mx, host)
			}
		}
		again, err := ParsePolicy(p.String())
		if err != nil || again.String() != p.String() {
			t.Fatalf("round trip of %q: %v", p.String(), err)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;ext=b")
	f.Add("v=STSv1 ;\tid=abc ;  ")
	f.Add("v=STSv1")
	f.Fuzz(func(t *testing.T, txt string) {
		r, err := ParseRecord(txt)
		if err != nil {
			return
		}
		if len(r.ID) == 0 || len(r.ID) > 32 || !allAlnum(r.ID) {
			t.Fatalf("id %q accepted", r.ID)
		}
		if !strings.HasPrefix(txt, "v=STSv1") {
			t.Fatalf("%q accepted without v=STSv1 first", txt)
		}
		_, _ = SelectRecord([]string{txt, "v=spf1 -all"})
	})
}
