package dnszone

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/schema"
	"mailfountain.dev/mailfountain/schema/schematest"
)

const base = `
system: {model: virtual, hostname: mail}
domains:
  - name: ma-societe.fr
    language: fr
    dns:
      delegated: true
`

// rsaDKIM is a value longer than 255 bytes, as an RSA-2048 key's is.
var rsaDKIM = "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 392)

var dkim = map[string]string{
	"mf20261204e._domainkey.ma-societe.fr": "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
	"mf20261204r._domainkey.ma-societe.fr": rsaDKIM,
	"mf20261204e._domainkey.other.example": "v=DKIM1; k=ed25519; p=other",
	// A name under another domain ending the same must not match.
	"mf20261204e._domainkey.xma-societe.fr": "v=DKIM1; k=ed25519; p=x",
}

func lines(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		out[i] = rr.String()
	}
	return out
}

func TestRecords(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.5")
	v6 := netip.MustParseAddr("2001:db8::5")
	for _, tc := range []struct {
		name     string
		hostname string // system.hostname, if not mail
		doc      string // appended to base's domain
		extra    string // top-level sections
		in       Inputs
		want     []string // records that must be there
		notWant  []string // substrings that must not
	}{
		{
			name: "defaults",
			in:   Inputs{Public4: v4, DKIM: dkim},
			want: []string{
				"ma-societe.fr.\t28800\tIN\tMX\t10 mail.ma-societe.fr.",
				"ma-societe.fr.\t28800\tIN\tTXT\t\"v=spf1 mx -all\"",
				"mail.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5",
				"mta-sts.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5",
				"_dmarc.ma-societe.fr.\t28800\tIN\tTXT\t\"v=DMARC1; p=none\"",
				"mf20261204e._domainkey.ma-societe.fr.\t28800\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
				"mf20261204r._domainkey.ma-societe.fr.\t28800\tIN\tTXT\t\"" + rsaDKIM[:255] + "\" \"" + rsaDKIM[255:] + "\"",
			},
			notWant: []string{"\tAAAA\t", "other.example", "xma-societe", "SOA", "\tNS\t"},
		},
		{
			name:    "ipv6 box, ttls and dmarc of the document",
			doc:     "      ttl: {a: 300, mx: 600, txt: 900}\n      dmarc: reject\n",
			in:      Inputs{Public6: v6},
			want:    []string{"mail.ma-societe.fr.\t300\tIN\tAAAA\t2001:db8::5", "ma-societe.fr.\t600\tIN\tMX\t10 mail.ma-societe.fr.", "_dmarc.ma-societe.fr.\t900\tIN\tTXT\t\"v=DMARC1; p=reject\""},
			notWant: []string{"\tA\t", "_domainkey"},
		},
		{
			name: "hosts by address family, apex and wildcard",
			doc:  "      hosts: {www: 198.51.100.7, \"@\": 198.51.100.8, files: \"2001:db8::10\", \"*\": 198.51.100.9}\n",
			in:   Inputs{Public4: v4},
			want: []string{
				"www.ma-societe.fr.\t10800\tIN\tA\t198.51.100.7",
				"ma-societe.fr.\t10800\tIN\tA\t198.51.100.8",
				"files.ma-societe.fr.\t10800\tIN\tAAAA\t2001:db8::10",
				"*.ma-societe.fr.\t10800\tIN\tA\t198.51.100.9",
			},
		},
		{
			name:  "relay by name",
			extra: "smtp: {mode: relay, relay: {host: smtp.provider.example}}\n",
			in:    Inputs{Public4: v4},
			want:  []string{"ma-societe.fr.\t28800\tIN\tTXT\t\"v=spf1 mx a:smtp.provider.example -all\""},
		},
		{
			name:  "relay by address",
			extra: "smtp: {mode: relay, relay: {host: 192.0.2.25}}\n",
			in:    Inputs{Public4: v4},
			want:  []string{"ma-societe.fr.\t28800\tIN\tTXT\t\"v=spf1 mx ip4:192.0.2.25 -all\""},
		},
		{
			name:  "a relay not used",
			extra: "smtp: {mode: direct, relay: {host: smtp.provider.example}}\n",
			in:    Inputs{Public4: v4},
			want:  []string{"ma-societe.fr.\t28800\tIN\tTXT\t\"v=spf1 mx -all\""},
		},
		{
			name:    "no public address: no address records",
			in:      Inputs{},
			want:    []string{"ma-societe.fr.\t28800\tIN\tMX\t10 mail.ma-societe.fr."},
			notWant: []string{"\tA\t", "\tAAAA\t"},
		},
		{
			name:     "another host name",
			hostname: "smtp",
			in:       Inputs{Public4: v4},
			want:     []string{"smtp.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5", "ma-societe.fr.\t28800\tIN\tMX\t10 smtp.ma-societe.fr.", "_mta-sts.ma-societe.fr.\t28800\tIN\tTXT\t\"v=STSv1; id="},
			notWant:  []string{"mail.ma-societe.fr"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := base
			if tc.hostname != "" {
				doc = strings.Replace(doc, "hostname: mail", "hostname: "+tc.hostname, 1)
			}
			st := schematest.Load(t, doc+tc.doc+tc.extra)
			rrs, err := Records(st, &st.Domains[0], tc.in)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(lines(rrs), "\n")
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in\n%s", w, text)
				}
			}
			for _, n := range tc.notWant {
				if strings.Contains(text, n) {
					t.Errorf("%q in\n%s", n, text)
				}
			}
			if again, _ := Records(st, &st.Domains[0], tc.in); !slices.Equal(lines(again), lines(rrs)) {
				t.Errorf("not deterministic:\n%s\n---\n%s", text, strings.Join(lines(again), "\n"))
			}
		})
	}
}

// The MTA-STS id follows the policy: the mode moves with system.tls.
func TestMTASTSID(t *testing.T) {
	st := schematest.Load(t, base)
	id := func() string {
		rrs, err := Records(st, &st.Domains[0], Inputs{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range rrs {
			if rr.Header().Name == "_mta-sts.ma-societe.fr." {
				return rr.(*dns.TXT).Txt[0]
			}
		}
		t.Fatal("no _mta-sts record")
		return ""
	}
	if p := MTASTSPolicy(st, "ma-societe.fr"); p != "version: STSv1\r\nmode: testing\r\nmx: mail.ma-societe.fr\r\nmax_age: 604800\r\n" {
		t.Errorf("policy %q", p)
	}
	before := id()
	if len(strings.TrimPrefix(before, "v=STSv1; id=")) != 32 {
		t.Errorf("id of %d characters: %q", len(before), before)
	}
	st.System.TLS = &schema.TLS{Certificate: "/c.pem", Key: "/k.pem"}
	if !strings.Contains(MTASTSPolicy(st, "ma-societe.fr"), "mode: enforce") || id() == before {
		t.Errorf("the policy with a certificate: %q, id %q", MTASTSPolicy(st, "ma-societe.fr"), id())
	}
}

func TestBuildZone(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.5")
	v6 := netip.MustParseAddr("2001:db8::5")
	for _, tc := range []struct {
		name  string
		doc   string
		in    Inputs
		want  []string
		count map[string]int // lines containing the key
	}{
		{
			name: "default name server with glue",
			in:   Inputs{Public4: v4, Public6: v6},
			want: []string{
				"ma-societe.fr.\t3600\tIN\tSOA\tns1.ma-societe.fr. hostmaster.ma-societe.fr. 2026120400 3600 900 1209600 3600",
				"ma-societe.fr.\t86400\tIN\tNS\tns1.ma-societe.fr.",
				"ns1.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5",
				"ns1.ma-societe.fr.\t10800\tIN\tAAAA\t2001:db8::5",
			},
			count: map[string]int{"\tSOA\t": 1, "\tNS\t": 1},
		},
		{
			name: "name servers of the document: glue only in the zone, not for a host",
			doc:  "      nameservers: [ns.ma-societe.fr, ns2.ma-societe.fr, ns.secondary.example]\n      hosts: {ns2: 192.0.2.53}\n      secondaries: [192.0.2.53]\n",
			in:   Inputs{Public4: v4},
			want: []string{
				"ma-societe.fr.\t3600\tIN\tSOA\tns.ma-societe.fr. hostmaster.ma-societe.fr.",
				"ma-societe.fr.\t86400\tIN\tNS\tns.secondary.example.",
				"ns.ma-societe.fr.\t10800\tIN\tA\t203.0.113.5",
				"ns2.ma-societe.fr.\t10800\tIN\tA\t192.0.2.53",
			},
			count: map[string]int{"\tNS\t": 3, "ns2.ma-societe.fr.\t": 1, "ns.secondary.example.\t": 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := schematest.Load(t, base+tc.doc)
			z, err := Build(st, &st.Domains[0], tc.in, 2026120400)
			if err != nil {
				t.Fatal(err)
			}
			if z.Origin != "ma-societe.fr." || z.Serial != 2026120400 {
				t.Fatalf("zone %s serial %d", z.Origin, z.Serial)
			}
			if _, ok := z.Records[0].(*dns.SOA); !ok {
				t.Fatalf("first record %s", z.Records[0])
			}
			text := z.Text()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in\n%s", w, text)
				}
			}
			for k, n := range tc.count {
				if got := strings.Count(text, k); got != n {
					t.Errorf("%d lines with %q, want %d:\n%s", got, k, n, text)
				}
			}
			for _, rr := range z.Records {
				if n := rr.Header().Name; n != strings.ToLower(n) || !dns.IsSubDomain(z.Origin, n) {
					t.Errorf("owner %q", n)
				}
			}

			// The text parses back, with miekg's parser, into the same zone.
			back, err := ParseText("ma-societe.fr", text)
			if err != nil {
				t.Fatalf("parse back: %v\n%s", err, text)
			}
			if back.Serial != z.Serial || !slices.Equal(lines(back.Records), lines(z.Records)) || !slices.Equal(back.Secondaries, z.Secondaries) {
				t.Errorf("parsed back:\n%s\nwant\n%s", back.Text(), text)
			}
			if back.ContentHash() != z.ContentHash() {
				t.Error("the content hash differs once parsed back")
			}
			var n int
			zp := dns.NewZoneParser(strings.NewReader(text), "", "")
			for _, ok := zp.Next(); ok; _, ok = zp.Next() {
				n++
			}
			if zp.Err() != nil || n != len(z.Records) {
				t.Errorf("ZoneParser: %d records, %v; want %d", n, zp.Err(), len(z.Records))
			}
		})
	}
}

// The content hash ignores the serial, and sees any other change.
func TestContentHash(t *testing.T) {
	st := schematest.Load(t, base)
	in := Inputs{Public4: netip.MustParseAddr("203.0.113.5"), DKIM: dkim}
	build := func(st *schema.State, in Inputs, serial uint32) Zone {
		z, err := Build(st, &st.Domains[0], in, serial)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	z := build(st, in, 2026120400)
	if h := build(st, in, 2026120517).ContentHash(); h != z.ContentHash() {
		t.Error("the serial changes the hash")
	}
	if z2, _ := z.WithSerial(7); z2.ContentHash() != z.ContentHash() || z2.Serial != 7 || z2.Records[0].(*dns.SOA).Serial != 7 || z.Records[0].(*dns.SOA).Serial != 2026120400 {
		t.Errorf("WithSerial: %d %s; original %s", z2.Serial, z2.Records[0], z.Records[0])
	}
	moved := PublicInputs(netip.MustParseAddr("203.0.113.6"), dkim)
	for name, other := range map[string]Zone{
		"address":    build(st, moved, 2026120400),
		"dkim":       build(st, Inputs{Public4: in.Public4}, 2026120400),
		"dmarc":      build(schematest.Load(t, base+"      dmarc: quarantine\n"), in, 2026120400),
		"secondary":  build(schematest.Load(t, base+"      secondaries: [192.0.2.53]\n"), in, 2026120400),
		"ttl":        build(schematest.Load(t, base+"      ttl: {a: 60}\n"), in, 2026120400),
		"nameserver": build(schematest.Load(t, base+"      nameservers: [ns.elsewhere.example]\n"), in, 2026120400),
	} {
		if other.ContentHash() == z.ContentHash() {
			t.Errorf("%s: same hash", name)
		}
	}
}

func TestNextSerial(t *testing.T) {
	day := time.Date(2026, 12, 4, 23, 59, 0, 0, time.UTC)
	for _, tc := range []struct {
		prev uint32
		now  time.Time
		want uint32
	}{
		{0, day, 2026120400},
		{2025010105, day, 2026120400},
		{2026120400, day, 2026120401},
		{2026120417, day, 2026120418},
		{2026120499, day, 2026120500}, // the 101st change of a day borrows the next
		{2026120600, day, 2026120601}, // a clock set back: still greater
		// Another zone's time: the UTC day counts.
		{0, time.Date(2026, 12, 5, 1, 0, 0, 0, time.FixedZone("CET", 3600)), 2026120500},
	} {
		if got := NextSerial(tc.prev, tc.now); got != tc.want {
			t.Errorf("NextSerial(%d, %s) = %d, want %d", tc.prev, tc.now, got, tc.want)
		}
	}
}

func TestParseTextRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"empty":      "",
		"no soa":     "ma-societe.fr. 60 IN A 192.0.2.1\n",
		"outside":    "ma-societe.fr. 60 IN SOA ns1.ma-societe.fr. h.ma-societe.fr. 1 2 3 4 5\nevil.example. 60 IN A 192.0.2.1\n",
		"syntax":     "ma-societe.fr. 60 IN SOA ns1.ma-societe.fr. h.ma-societe.fr. 1 2 3 4 5\nwww 60 IN A not-an-address\n",
		"secondary":  "; secondaries: nope\nma-societe.fr. 60 IN SOA ns1.ma-societe.fr. h.ma-societe.fr. 1 2 3 4 5\n",
		"soa not at": "www.ma-societe.fr. 60 IN SOA ns1.ma-societe.fr. h.ma-societe.fr. 1 2 3 4 5\n",
	} {
		if _, err := ParseText("ma-societe.fr", text); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// FuzzParseText: a zone file on disk (which a person may edit) never
// crashes the reader, and a zone it accepts survives Text and ParseText.
func FuzzParseText(f *testing.F) {
	st, err := schema.Load([]schema.Source{{Name: "state.yaml", Data: []byte(base + "      hosts: {www: 198.51.100.7}\n      secondaries: [192.0.2.53]\n"), Mode: 0o600}})
	if err != nil {
		f.Fatal(err)
	}
	z, err := Build(st, &st.Domains[0], Inputs{Public4: netip.MustParseAddr("203.0.113.5"), DKIM: dkim}, 2026120400)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(z.Text())
	f.Add("ma-societe.fr. 60 IN SOA ns1 h 1 2 3 4 5\n$ORIGIN x.ma-societe.fr.\n@ IN TXT \"a\\\"b\" c\n")
	f.Fuzz(func(t *testing.T, text string) {
		z, err := ParseText("ma-societe.fr", text)
		if err != nil {
			return
		}
		back, err := ParseText("ma-societe.fr", z.Text())
		if err != nil {
			t.Fatalf("the text of an accepted zone does not parse: %v\n%s", err, z.Text())
		}
		if back.ContentHash() != z.ContentHash() || back.Serial != z.Serial {
			t.Fatalf("round trip changed the zone:\n%s\n---\n%s", z.Text(), back.Text())
		}
	})
}
