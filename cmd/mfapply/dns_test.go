package main

import (
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
)

// docDNS has a domain served by the box and one that is not, and names
// the box's public address.
const docDNS = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}, public_address: 203.0.113.5}
smtp: {mode: relay, relay: {host: smtp.provider.example}}
domains:
  - name: a.example
    dns: {hosts: {www: 198.51.100.7}, dmarc: quarantine}
    accounts:
      - {id: bob, name: Bob}
  - name: b.example
    dns: {delegated: true, nameservers: [ns1.b.example, ns.secondary.example]}
`

// TestDNSRecords: `mfapply dns records` prints what the registrar needs,
// in zone-file syntax that miekg's parser reads, with the document's
// address and the DKIM keys on disk; the delegation only for a domain the
// box serves.
func TestDNSRecords(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "dns", "records", "a.example"), 1, "no data directory")
	e.expect(e.run("", "apply", "-f", e.file("dns.yaml", docDNS), "--yes"), 0, "applied: version 1", "+ dns records of a.example at its registrar", "+ dns zone b.example")

	r := e.run("", "dns", "records", "A.Example.")
	e.expect(r, 0, "; the records of a.example to create at its registrar", "; public address: 203.0.113.5 (network.public_address)")
	got := map[string][]string{} // "name TYPE" -> data
	zp := mdns.NewZoneParser(strings.NewReader(r.stdout), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		k := h.Name + " " + mdns.TypeToString[h.Rrtype]
		got[k] = append(got[k], strings.TrimPrefix(rr.String(), h.String()))
	}
	if zp.Err() != nil {
		t.Fatalf("the output does not parse: %v\n%s", zp.Err(), r.stdout)
	}
	keys, err := dkimsign.Load(dkimsign.Dir(e.data), "a.example")
	if err != nil {
		t.Fatal(err)
	}
	txts, err := keys.Records()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"mail.a.example. A":       {"203.0.113.5"},
		"mta-sts.a.example. A":    {"203.0.113.5"},
		"www.a.example. A":        {"198.51.100.7"},
		"a.example. MX":           {"10 mail.a.example."},
		"a.example. TXT":          {`"v=spf1 mx a:smtp.provider.example -all"`},
		"_dmarc.a.example. TXT":   {`"v=DMARC1; p=quarantine"`},
		"_mta-sts.a.example. TXT": nil, // checked apart: a digest
	}
	for _, tx := range txts {
		want[tx.Name+". TXT"] = []string{`"` + strings.Join(tx.Strings, `" "`) + `"`}
	}
	for k, v := range want {
		if v != nil && !slices.Equal(got[k], v) {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) || len(got["_mta-sts.a.example. TXT"]) != 1 || !strings.HasPrefix(got["_mta-sts.a.example. TXT"][0], `"v=STSv1; id=`) {
		t.Errorf("records %q", got)
	}

	// A delegated domain: its delegation; no DKIM keys yet is said (the
	// domain has no account, but every domain gets keys).
	r = e.run("", "dns", "records", "b.example")
	e.expect(r, 0, "; b.example is delegated to the box",
		"b.example.\t86400\tIN\tNS\tns1.b.example.\n", "b.example.\t86400\tIN\tNS\tns.secondary.example.\n", "ns1.b.example.\t10800\tIN\tA\t203.0.113.5\n")
	if strings.Contains(r.stdout, "MX") || strings.Contains(r.stdout, "SOA") {
		t.Errorf("more than the delegation:\n%s", r.stdout)
	}

	r = e.run("", "dns", "records", "a.example", "--json")
	e.expect(r, 0)
	var out struct {
		Domain        string      `json:"domain"`
		Delegated     bool        `json:"delegated"`
		PublicAddress string      `json:"public_address"`
		DKIMKeys      bool        `json:"dkim_keys"`
		Records       []dnsRecord `json:"records"`
	}
	decodeJSON(t, r, &out)
	if out.Domain != "a.example" || out.Delegated || out.PublicAddress != "203.0.113.5" || !out.DKIMKeys || len(out.Records) != len(want) ||
		out.Records[0] != (dnsRecord{Name: "a.example.", Type: "MX", TTL: 28800, Value: "10 mail.a.example."}) {
		t.Errorf("--json: %+v", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dns", "records", "c.example"}, "mfapply dns: no domain c.example in the applied document (version 1)"},
		{[]string{"dns", "records", "../../etc"}, "is not a domain name"},
		{[]string{"dns"}, "missing argument"},
		{[]string{"dns", "records"}, "dns records takes one DOMAIN"},
		{[]string{"dns", "zone", "a.example"}, `unknown dns command "zone"`},
	} {
		e.expect(e.run("", tc.args...), 1, tc.want)
	}
}

// TestDNSCheckCommand: `mfapply dns check` asks the resolver for the
// records that `dns records` prints: exit 0 when all are published, 1 with
// what is missing; for a delegated domain, the whole zone.
func TestDNSCheckCommand(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "apply", "-f", e.file("dns.yaml", docDNS), "--yes"), 0, "applied: version 1")
	r := e.run("", "dns", "records", "a.example")
	e.expect(r, 0)
	var published []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if l != "" && !strings.HasPrefix(l, ";") {
			published = append(published, l)
		}
	}
	all := dnstest.New(t, published...).Addr()
	e.expect(e.run("", "dns", "check", "a.example", "--resolver", all), 0, "MX       a.example.", "match", "9 of 9 record sets match")

	var noDMARC []string
	for _, l := range published {
		if !strings.HasPrefix(l, "_dmarc.") {
			noDMARC = append(noDMARC, l)
		}
	}
	e.expect(e.run("", "dns", "check", "a.example", "--resolver", dnstest.New(t, noDMARC...).Addr()), 1,
		"DMARC    _dmarc.a.example.                        missing", "8 of 9 record sets match")

	// b.example is delegated: its whole zone is checked, SOA and MX too.
	r = e.run("", "dns", "check", "b.example", "--resolver", all, "--json")
	e.expect(r, 1, `"domain": "b.example"`, `"type": "SOA"`, `"type": "MX"`, `"verdict": "missing"`)

	e.expect(e.run("", "dns", "records", "a.example", "--resolver", all), 1, "--resolver is for dns check")
	e.expect(e.run("", "dns", "check", "a.example", "--resolver", "[::1"), 1, "want ADDR or ADDR:PORT")
}
