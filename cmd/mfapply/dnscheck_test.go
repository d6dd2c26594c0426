package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
)

func TestDNSCheck(t *testing.T) {
	expected := []string{
		"a.example. 28800 IN MX 10 mail.a.example.",
		"mail.a.example. 10800 IN A 192.0.2.10",
		`a.example. 28800 IN TXT "v=spf1 mx -all"`,
		`_dmarc.a.example. 28800 IN TXT "v=DMARC1; p=none"`,
	}
	var want []dns.RR
	for _, s := range expected {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, rr)
	}
	for _, c := range []struct {
		name      string
		published []string
		json      bool
		code      int
		out       []string
	}{
		{"all published", expected, false, exitOK, []string{
			"; DNS records of a.example as the resolver",
			"MX       a.example.                               match",
			"DMARC    _dmarc.a.example.                        match",
			"4 of 4 record sets match",
		}},
		{"SPF differs, DMARC missing", []string{expected[0], expected[1], `a.example. 300 IN TXT "v=spf1 a -all"`}, false, exitFail, []string{
			"SPF      a.example.                               differs",
			`    expected   a.example.	28800	IN	TXT	"v=spf1 mx -all"`,
			`    published  a.example.	300	IN	TXT	"v=spf1 a -all"`,
			"DMARC    _dmarc.a.example.                        missing (no such name (NXDOMAIN))",
			"2 of 4 record sets match",
		}},
		{"JSON", []string{expected[0], expected[1], expected[2]}, true, exitFail, []string{
			`"ok": false`, `"kind": "DMARC"`, `"verdict": "missing"`, `"published": []`, `"verdict": "match"`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := dnstest.New(t, c.published...).Addr()
			var out bytes.Buffer
			cl := &cli{stdout: &out, stderr: &out, json: c.json}
			code := cl.dnsCheck(t.Context(), "a.example", addr, want)
			if code != c.code {
				t.Errorf("status %d, want %d\n%s", code, c.code, out.String())
			}
			for _, s := range c.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
			if c.json && !json.Valid(out.Bytes()) {
				t.Errorf("not JSON:\n%s", out.String())
			}
		})
	}
}

func TestResolverAddr(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("search lan\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.conf")
	if err := os.WriteFile(empty, []byte("search lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag, conf, want, err string
	}{
		{"", conf, "192.0.2.53:53", ""},
		{"", empty, "", "no nameserver"},
		{"", filepath.Join(t.TempDir(), "none"), "", "find a resolver"},
		{"127.0.0.1", conf, "127.0.0.1:53", ""},
		{"127.0.0.1:5353", conf, "127.0.0.1:5353", ""},
		{"::1", conf, "[::1]:53", ""},
		{"[::1]:5353", conf, "[::1]:5353", ""},
		{"[::1]", conf, "", "want ADDR or ADDR:PORT"},
		{":53", conf, "", "want ADDR or ADDR:PORT"},
	} {
		got, err := resolverAddr(c.flag, c.conf)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("resolverAddr(%q) = %q, %v; want %q, error with %q", c.flag, got, err, c.want, c.err)
		}
	}
}
