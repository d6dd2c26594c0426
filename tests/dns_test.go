package tests

// End-to-end tests of the DNS server: a real mailfountaind with --dns on
// loopback, serving the zones of delegated domains, asked by dig and by
// miekg's client; the document edited the way an admin does.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// dnsDocOpts fill dnsDoc.
type dnsDocOpts struct {
	PublicAddress string            // network.public_address; 203.0.113.10 if empty
	Hosts         map[string]string // dns.hosts of ma-societe.fr; www only if nil
	Nameservers   []string          // dns.nameservers of ma-societe.fr
	Secondaries   []string          // dns.secondaries of ma-societe.fr
	BobName       string            // an account's name: no part of any zone
}

// dnsDoc is a document with two delegated domains: ma-societe.fr with
// the manual's TTLs, and c.example with TTLs of its own and a wildcard
// host.
func dnsDoc(o dnsDocOpts) string {
	if o.PublicAddress == "" {
		o.PublicAddress = "203.0.113.10"
	}
	if o.Hosts == nil {
		o.Hosts = map[string]string{"www": "198.51.100.7"}
	}
	if o.BobName == "" {
		o.BobName = "Bob"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}, public_address: %s}\nsmtp: {mode: direct}\n", o.PublicAddress)
	b.WriteString("domains:\n  - name: ma-societe.fr\n    dns:\n      delegated: true\n      hosts:\n")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range o.Hosts {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "        %q: %s\n", k, o.Hosts[k])
	}
	if len(o.Nameservers) > 0 {
		fmt.Fprintf(&b, "      nameservers: [%s]\n", strings.Join(o.Nameservers, ", "))
	}
	if len(o.Secondaries) > 0 {
		fmt.Fprintf(&b, "      secondaries: [%s]\n", strings.Join(o.Secondaries, ", "))
	}
	fmt.Fprintf(&b, "    accounts:\n      - {id: bob, name: %q}\n", o.BobName)
	b.WriteString("  - name: c.example\n    dns:\n      delegated: true\n      ttl: {a: 600, mx: 3600, txt: 300}\n      hosts: {\"*\": 198.51.100.8}\n    accounts:\n      - {id: carol}\n")
	return b.String()
}

// dnsDaemon is a mailfountaind serving DNS on loopback; udp and tcp are
// the addresses of its endpoints (--dns 127.0.0.1:0 takes a free port for
// each).
type dnsDaemon struct {
	*mailDaemon
	udp, tcp string
}

// startDNS writes doc, starts mailfountaind with --dns on loopback and
// more args, and waits until it serves ma-societe.fr's zone.
func startDNS(t *testing.T, doc string, args ...string) *dnsDaemon {
	t.Helper()
	dir := t.TempDir()
	m := &mailDaemon{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state.yaml"),
		args: append([]string{"--dns", "127.0.0.1:0"}, args...)}
	if err := os.WriteFile(m.state, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := mfapply(t, "", "validate", "-f", m.state); code != 0 {
		t.Fatalf("mfapply validate: exit %d\n%s%s", code, out, errOut)
	}
	d := &dnsDaemon{mailDaemon: m}
	d.restart(t)
	waitVersions(t, m.data, 1)
	return d
}

// dnsListeningRE is listeningRE with the names of the DNS endpoints
// ("dns-tcp").
var dnsListeningRE = regexp.MustCompile(`msg=listening server=([\w-]+) addr=(\S+)`)

// restart starts the daemon (again, after stop) and waits until both DNS
// endpoints listen and the zone of ma-societe.fr is served.
func (d *dnsDaemon) restart(t *testing.T) {
	t.Helper()
	d.start(t)
	waitFor(t, "the DNS endpoints", func() error {
		if !d.proc.running() {
			t.Fatalf("mailfountaind exited: %v\n%s", d.proc.err, d.proc.stderr)
		}
		for _, l := range dnsListeningRE.FindAllStringSubmatch(d.proc.stderr.String(), -1) {
			d.addrs[l[1]] = l[2]
		}
		if d.addrs["dns"] == "" || d.addrs["dns-tcp"] == "" {
			return fmt.Errorf("listening: %v", d.addrs)
		}
		return nil
	})
	d.udp, d.tcp = d.addrs["dns"], d.addrs["dns-tcp"]
	waitFor(t, "the zone of ma-societe.fr", func() error {
		r, err := d.exchange("ma-societe.fr.", mdns.TypeSOA, false)
		if err == nil && (r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1) {
			err = fmt.Errorf("SOA: %s, %d answers", mdns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return err
	})
}

// exchange asks the daemon one question with miekg's client, over UDP
// (with EDNS0, 1232 bytes) or TCP.
func (d *dnsDaemon) exchange(name string, qtype uint16, tcp bool) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	c, addr := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}, d.udp
	if tcp {
		c.Net, addr = "tcp", d.tcp
	}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s over %s: %w", name, mdns.TypeToString[qtype], c.Net, err)
	}
	return r, nil
}

// ask is exchange over UDP that fails the test on an error.
func (d *dnsDaemon) ask(t *testing.T, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	r, err := d.exchange(name, qtype, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serial is the SOA serial ma-societe.fr is served with.
func (d *dnsDaemon) serial(t *testing.T) uint32 {
	t.Helper()
	r := d.ask(t, "ma-societe.fr.", mdns.TypeSOA)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA of ma-societe.fr: %d answers: %v", len(r.Answer), r)
	}
	return r.Answer[0].(*mdns.SOA).Serial
}

// dig runs dig against the daemon's UDP endpoint (its TCP one with
// +tcp) and returns its output.
func (d *dnsDaemon) dig(t *testing.T, args ...string) string {
	t.Helper()
	digBin := needTool(t, "dig")
	host, port := splitHostPort(t, d.udp)
	if slices.Contains(args, "+tcp") || slices.Contains(args, "AXFR") {
		host, port = splitHostPort(t, d.tcp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, args...)
	out, err := exec.CommandContext(ctx, digBin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	return string(out)
}

// digShort is dig +short's lines, sorted.
func (d *dnsDaemon) digShort(t *testing.T, name, typ string) []string {
	t.Helper()
	out := strings.Split(strings.TrimSpace(d.dig(t, "+short", "+norec", name, typ)), "\n")
	if out[0] == "" {
		out = nil
	}
	slices.Sort(out)
	return out
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("no port in %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// rrs are the records of a section of the given type, as
// "name ttl value" (the data as in zone-file syntax), sorted.
func rrs(section []mdns.RR, qtype uint16) []string {
	var out []string
	for _, rr := range section {
		h := rr.Header()
		if h.Rrtype == qtype {
			out = append(out, fmt.Sprintf("%s %d %s", h.Name, h.Ttl, strings.TrimPrefix(rr.String(), h.String())))
		}
	}
	slices.Sort(out)
	return out
}

// bumpedOnce says whether serial follows prev by exactly one bump:
// prev+1, or the first serial of a new day when the test ran across
// midnight (UTC).
func bumpedOnce(prev, serial uint32) bool {
	return serial == prev+1 || serial == dnszone.NextSerial(prev, time.Now()) && serial != prev
}

var serialRE = regexp.MustCompile(`^20[0-9]{6}[0-9]{2}$`)

// TestDNSZone: the zone of a delegated domain, record by record, with
// the manual's TTLs and a domain's own; NXDOMAIN and NODATA; REFUSED for
// a name outside the zones; dig agrees with miekg's client.
func TestDNSZone(t *testing.T) {
	t.Parallel()
	d := startDNS(t, dnsDoc(dnsDocOpts{}))

	// The SOA: authoritative, a serial YYYYMMDDnn.
	r := d.ask(t, "ma-societe.fr.", mdns.TypeSOA)
	if !r.Authoritative || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("SOA: AA %v, %s, %d answers, want AA, NOERROR, 1", r.Authoritative, mdns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if opt := r.IsEdns0(); opt == nil || opt.UDPSize() < 512 || opt.UDPSize() > 1232 {
		t.Errorf("SOA asked with EDNS0: OPT %v, want one with a UDP size of 512 to 1232 (DNS flag day 2020)", opt)
	}
	soa := r.Answer[0].(*mdns.SOA)
	if !serialRE.MatchString(strconv.FormatUint(uint64(soa.Serial), 10)) || soa.Ns != "ns1.ma-societe.fr." || soa.Mbox != "hostmaster.ma-societe.fr." {
		t.Errorf("SOA %s, want ns1.ma-societe.fr. hostmaster.ma-societe.fr. YYYYMMDDnn", soa)
	}

	const pub = "203.0.113.10"
	tests := []struct {
		name  string
		qtype uint16
		want  []string // the answer section, rrs' format
	}{
		{"ma-societe.fr.", mdns.TypeNS, []string{"ma-societe.fr. 86400 ns1.ma-societe.fr."}},
		{"ns1.ma-societe.fr.", mdns.TypeA, []string{"ns1.ma-societe.fr. 10800 " + pub}},
		{"ma-societe.fr.", mdns.TypeMX, []string{"ma-societe.fr. 28800 10 mail.ma-societe.fr."}},
		{"mail.ma-societe.fr.", mdns.TypeA, []string{"mail.ma-societe.fr. 10800 " + pub}},
		{"ma-societe.fr.", mdns.TypeTXT, []string{`ma-societe.fr. 28800 "v=spf1 mx -all"`}},
		{"_dmarc.ma-societe.fr.", mdns.TypeTXT, []string{`_dmarc.ma-societe.fr. 28800 "v=DMARC1; p=none"`}},
		{"www.ma-societe.fr.", mdns.TypeA, []string{"www.ma-societe.fr. 10800 198.51.100.7"}},
		{"mta-sts.ma-societe.fr.", mdns.TypeA, []string{"mta-sts.ma-societe.fr. 10800 " + pub}},
		// The domain's own TTLs.
		{"mail.c.example.", mdns.TypeA, []string{"mail.c.example. 600 " + pub}},
		{"c.example.", mdns.TypeMX, []string{"c.example. 3600 10 mail.c.example."}},
		{"c.example.", mdns.TypeTXT, []string{`c.example. 300 "v=spf1 mx -all"`}},
		{"_dmarc.c.example.", mdns.TypeTXT, []string{`_dmarc.c.example. 300 "v=DMARC1; p=none"`}},
		// The wildcard: the owner is the name asked; names that exist
		// are not covered.
		{"anything.c.example.", mdns.TypeA, []string{"anything.c.example. 600 198.51.100.8"}},
		{"a.b.c.example.", mdns.TypeA, []string{"a.b.c.example. 600 198.51.100.8"}},
		{"mail.c.example.", mdns.TypeA, []string{"mail.c.example. 600 " + pub}},
	}
	for _, tc := range tests {
		t.Run(tc.name+mdns.TypeToString[tc.qtype], func(t *testing.T) {
			r := d.ask(t, tc.name, tc.qtype)
			if !r.Authoritative || r.Rcode != mdns.RcodeSuccess {
				t.Errorf("AA %v, %s; want AA, NOERROR", r.Authoritative, mdns.RcodeToString[r.Rcode])
			}
			if got := rrs(r.Answer, tc.qtype); !slices.Equal(got, tc.want) {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
		})
	}

	// The NS answer carries the glue.
	r = d.ask(t, "ma-societe.fr.", mdns.TypeNS)
	if got, want := rrs(r.Extra, mdns.TypeA), []string{"ns1.ma-societe.fr. 10800 " + pub}; !slices.Equal(got, want) {
		t.Errorf("NS additional %q, want the glue %q", got, want)
	}

	// _mta-sts: a policy id.
	r = d.ask(t, "_mta-sts.ma-societe.fr.", mdns.TypeTXT)
	if got := rrs(r.Answer, mdns.TypeTXT); len(got) != 1 || !regexp.MustCompile(`^_mta-sts\.ma-societe\.fr\. 28800 "v=STSv1; id=[0-9a-zA-Z]{1,32}"$`).MatchString(got[0]) {
		t.Errorf("_mta-sts TXT %q, want one v=STSv1; id=…", got)
	}

	// The DKIM keys: those mfapply dkim show prints, string by string.
	code, out, errOut := mfapply(t, "", "--data", d.data, "dkim", "show", "--json", "ma-societe.fr")
	if code != 0 {
		t.Fatalf("mfapply dkim show: exit %d: %s", code, errOut)
	}
	var shown struct {
		Records []struct {
			Name, Value string
			Strings     []string
		}
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("mfapply dkim show --json: %v\n%s", err, out)
	}
	if len(shown.Records) < 2 {
		t.Fatalf("mfapply dkim show: %d records, want the ed25519 and RSA keys", len(shown.Records))
	}
	for _, k := range shown.Records {
		r := d.ask(t, k.Name+".", mdns.TypeTXT)
		if len(r.Answer) != 1 || !r.Authoritative {
			t.Errorf("%s TXT: AA %v, %d answers, want AA, 1", k.Name, r.Authoritative, len(r.Answer))
			continue
		}
		txt := r.Answer[0].(*mdns.TXT)
		if !slices.Equal(txt.Txt, k.Strings) || strings.Join(txt.Txt, "") != k.Value || txt.Hdr.Ttl != 28800 {
			t.Errorf("%s TXT served %q TTL %d, want %q (mfapply dkim show) TTL 28800", k.Name, txt.Txt, txt.Hdr.Ttl, k.Strings)
		}
		if got := d.digShort(t, k.Name, "TXT"); len(got) != 1 || strings.ReplaceAll(strings.Trim(got[0], `"`), `" "`, "") != k.Value {
			t.Errorf("dig %s TXT: %q, want %q", k.Name, got, k.Value)
		}
	}

	// NXDOMAIN and NODATA: authoritative, the SOA in authority.
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"nothing.ma-societe.fr.", mdns.TypeA, mdns.RcodeNameError},
		{"a.b.www.ma-societe.fr.", mdns.TypeA, mdns.RcodeNameError},
		{"mail.ma-societe.fr.", mdns.TypeMX, mdns.RcodeSuccess},
		{"www.ma-societe.fr.", mdns.TypeAAAA, mdns.RcodeSuccess},
		{"nothing.c.example.", mdns.TypeTXT, mdns.RcodeSuccess}, // the wildcard has no TXT
		{"mail.c.example.", mdns.TypeTXT, mdns.RcodeSuccess},
	} {
		r := d.ask(t, tc.name, tc.qtype)
		soa := rrs(r.Ns, mdns.TypeSOA)
		if r.Rcode != tc.rcode || !r.Authoritative || len(r.Answer) != 0 || len(soa) != 1 {
			t.Errorf("%s %s: %s AA %v, %d answers, authority SOA %q; want %s AA, no answer, the SOA",
				tc.name, mdns.TypeToString[tc.qtype], mdns.RcodeToString[r.Rcode], r.Authoritative, len(r.Answer), soa, mdns.RcodeToString[tc.rcode])
		}
	}

	// ANY: one RRset of the name (RFC 8482), not all of them.
	r = d.ask(t, "ma-societe.fr.", mdns.TypeANY)
	types := map[uint16]bool{}
	for _, rr := range r.Answer {
		types[rr.Header().Rrtype] = true
	}
	if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || len(types) != 1 {
		t.Errorf("ANY ma-societe.fr.: %s AA %v, answer %v; want NOERROR, AA, one RRset", mdns.RcodeToString[r.Rcode], r.Authoritative, r.Answer)
	}

	// A name outside the zones, from loopback (not the LAN): REFUSED,
	// recursion desired or not: never an open resolver.
	for _, name := range []string{"example.com.", "fr.", "."} {
		r := d.ask(t, name, mdns.TypeA) // SetQuestion sets RD
		if r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 || r.RecursionAvailable {
			t.Errorf("%s A from 127.0.0.1: %s, %d answers, RA %v; want REFUSED, nothing, no RA", name, mdns.RcodeToString[r.Rcode], len(r.Answer), r.RecursionAvailable)
		}
	}

	// dig sees the same.
	if out := d.dig(t, "+norec", "ma-societe.fr", "SOA"); !regexp.MustCompile(`flags: qr aa;`).MatchString(out) || !strings.Contains(out, "status: NOERROR") {
		t.Errorf("dig SOA: want flags qr aa and NOERROR:\n%s", out)
	}
	for _, tc := range []struct{ name, typ, want string }{
		{"ma-societe.fr", "MX", "10 mail.ma-societe.fr."},
		{"mail.ma-societe.fr", "A", pub},
		{"www.ma-societe.fr", "A", "198.51.100.7"},
		{"ma-societe.fr", "TXT", `"v=spf1 mx -all"`},
		{"_dmarc.ma-societe.fr", "TXT", `"v=DMARC1; p=none"`},
	} {
		if got := d.digShort(t, tc.name, tc.typ); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("dig +short %s %s: %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
	if out := d.dig(t, "nothing.ma-societe.fr", "A"); !strings.Contains(out, "status: NXDOMAIN") || !regexp.MustCompile(`(?m)^ma-societe\.fr\.\s+\d+\s+IN\s+SOA\s`).MatchString(out) {
		t.Errorf("dig nothing.ma-societe.fr: want NXDOMAIN and the SOA:\n%s", out)
	}
	if out := d.dig(t, "example.com", "A"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("dig example.com: want REFUSED:\n%s", out)
	}
}

// TestDNSRecordsCommand: `mfapply dns records` of a delegated domain
// prints its delegation only, NS and glue, which the daemon serves.
func TestDNSRecordsCommand(t *testing.T) {
	t.Parallel()
	d := startDNS(t, dnsDoc(dnsDocOpts{Nameservers: []string{"ns1.ma-societe.fr", "ns2.ma-societe.fr", "ns.secondary.example"}}))
	code, out, errOut := mfapply(t, "", "--data", d.data, "dns", "records", "--json", "ma-societe.fr")
	if code != 0 {
		t.Fatalf("mfapply dns records: exit %d: %s", code, errOut)
	}
	var printed struct {
		Delegated bool
		Records   []struct {
			Name, Type, Value string
			TTL               uint32
		}
	}
	if err := json.Unmarshal([]byte(out), &printed); err != nil {
		t.Fatalf("mfapply dns records --json: %v\n%s", err, out)
	}
	var got []string
	for _, rec := range printed.Records {
		got = append(got, rec.Name+" "+rec.Type+" "+rec.Value)
		// The daemon serves it, with the TTL printed.
		r := d.ask(t, rec.Name, mdns.StringToType[rec.Type])
		if served := rrs(r.Answer, mdns.StringToType[rec.Type]); !slices.Contains(served, fmt.Sprintf("%s %d %s", rec.Name, rec.TTL, rec.Value)) {
			t.Errorf("printed %s %d %s %s, served %q", rec.Name, rec.TTL, rec.Type, rec.Value, served)
		}
		if short := d.digShort(t, rec.Name, rec.Type); !slices.Contains(short, rec.Value) {
			t.Errorf("printed %s %s %s, dig +short says %q", rec.Name, rec.Type, rec.Value, short)
		}
	}
	slices.Sort(got)
	want := []string{
		"ma-societe.fr. NS ns.secondary.example.",
		"ma-societe.fr. NS ns1.ma-societe.fr.",
		"ma-societe.fr. NS ns2.ma-societe.fr.",
		"ns1.ma-societe.fr. A 203.0.113.10",
		"ns2.ma-societe.fr. A 203.0.113.10",
	}
	if !printed.Delegated || !slices.Equal(got, want) {
		t.Errorf("mfapply dns records ma-societe.fr: delegated %v, records\n%s\nwant delegated, the delegation only:\n%s", printed.Delegated, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The text form says why there is so little.
	if code, out, _ := mfapply(t, "", "--data", d.data, "dns", "records", "ma-societe.fr"); code != 0 || !strings.Contains(out, "ma-societe.fr is delegated to the box") {
		t.Errorf("mfapply dns records: exit %d:\n%s", code, out)
	}
}

// TestDNSSerial: an edit that changes the zone is served within seconds
// with the serial bumped once; an edit that does not leaves it; a
// restart serves the same serial.
func TestDNSSerial(t *testing.T) {
	t.Parallel()
	o := dnsDocOpts{}
	d := startDNS(t, dnsDoc(o))
	s0 := d.serial(t)

	// An account's name is no part of the zone.
	o.BobName = "Bob Renamed"
	saveByRename(t, d.state, dnsDoc(o))
	waitVersions(t, d.data, 2)
	if s := d.serial(t); s != s0 {
		t.Errorf("after an edit of an account's name: serial %d, want %d", s, s0)
	}

	// A new public address: mail. follows, the serial bumps once.
	o.PublicAddress = "203.0.113.20"
	saveByRename(t, d.state, dnsDoc(o))
	waitFor(t, "the new address", func() error {
		r, err := d.exchange("mail.ma-societe.fr.", mdns.TypeA, false)
		if err == nil && !slices.Equal(rrs(r.Answer, mdns.TypeA), []string{"mail.ma-societe.fr. 10800 203.0.113.20"}) {
			err = fmt.Errorf("mail.ma-societe.fr A %q", rrs(r.Answer, mdns.TypeA))
		}
		return err
	})
	s1 := d.serial(t)
	if !bumpedOnce(s0, s1) {
		t.Errorf("after a new public address: serial %d, want %d", s1, s0+1)
	}

	// A new host: once more.
	o.Hosts = map[string]string{"www": "198.51.100.7", "intranet": "198.51.100.9"}
	saveByRename(t, d.state, dnsDoc(o))
	waitFor(t, "the new host", func() error {
		r, err := d.exchange("intranet.ma-societe.fr.", mdns.TypeA, false)
		if err == nil && r.Rcode != mdns.RcodeSuccess {
			err = fmt.Errorf("intranet.ma-societe.fr A: %s", mdns.RcodeToString[r.Rcode])
		}
		return err
	})
	s2 := d.serial(t)
	if !bumpedOnce(s1, s2) {
		t.Errorf("after a new host: serial %d, want %d", s2, s1+1)
	}
	if got := d.digShort(t, "intranet.ma-societe.fr", "A"); !slices.Equal(got, []string{"198.51.100.9"}) {
		t.Errorf("dig intranet.ma-societe.fr: %q", got)
	}
	waitVersions(t, d.data, 4)

	// A restart serves the same serial and the same records.
	d.stop(t)
	d.restart(t)
	if s := d.serial(t); s != s2 {
		t.Errorf("after a restart: serial %d, want %d", s, s2)
	}
	if got := d.digShort(t, "mail.ma-societe.fr", "A"); !slices.Equal(got, []string{"203.0.113.20"}) {
		t.Errorf("after a restart, dig mail.ma-societe.fr: %q", got)
	}
	// Time alone (the network reconciler polls every 3 s) changes
	// nothing.
	time.Sleep(3500 * time.Millisecond)
	if s := d.serial(t); s != s2 {
		t.Errorf("3.5 s after the restart: serial %d, want %d", s, s2)
	}
}

// TestDNSTransfer: AXFR is refused to anyone but the secondaries, then
// allowed to 127.0.0.1 once the document names it.
func TestDNSTransfer(t *testing.T) {
	t.Parallel()
	o := dnsDocOpts{}
	d := startDNS(t, dnsDoc(o))
	axfr := func() ([]mdns.RR, error) {
		q := new(mdns.Msg)
		q.SetAxfr("ma-societe.fr.")
		tr := &mdns.Transfer{DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second}
		ch, err := tr.In(q, d.tcp)
		if err != nil {
			return nil, err
		}
		var out []mdns.RR
		for env := range ch {
			if env.Error != nil {
				return nil, env.Error
			}
			out = append(out, env.RR...)
		}
		return out, nil
	}
	if recs, err := axfr(); err == nil {
		t.Errorf("AXFR without secondaries: %d records, want refused", len(recs))
	}
	if out := d.dig(t, "ma-societe.fr", "AXFR"); !strings.Contains(out, "Transfer failed") {
		t.Errorf("dig AXFR without secondaries, want Transfer failed:\n%s", out)
	}
	// Over UDP too: refused.
	if r := d.ask(t, "ma-societe.fr.", mdns.TypeAXFR); r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
		t.Errorf("AXFR over UDP: %s with %d answers", mdns.RcodeToString[r.Rcode], len(r.Answer))
	}

	o.Secondaries = []string{"127.0.0.1"}
	saveByRename(t, d.state, dnsDoc(o))
	var recs []mdns.RR
	waitFor(t, "AXFR allowed", func() error {
		var err error
		recs, err = axfr()
		return err
	})
	if len(recs) < 3 || recs[0].Header().Rrtype != mdns.TypeSOA || recs[len(recs)-1].Header().Rrtype != mdns.TypeSOA {
		t.Fatalf("AXFR: %d records, want the zone between two SOAs", len(recs))
	}
	if mx := rrs(recs, mdns.TypeMX); !slices.Equal(mx, []string{"ma-societe.fr. 28800 10 mail.ma-societe.fr."}) {
		t.Errorf("AXFR MX %q", mx)
	}
	if out := d.dig(t, "ma-societe.fr", "AXFR"); strings.Contains(out, "Transfer failed") ||
		len(regexp.MustCompile(`(?m)^ma-societe\.fr\.\s+\d+\s+IN\s+SOA\s`).FindAllString(out, -1)) != 2 || !strings.Contains(out, "www.ma-societe.fr.") {
		t.Errorf("dig AXFR with 127.0.0.1 a secondary, want the zone:\n%s", out)
	}

	// IXFR: an up-to-date secondary gets the SOA alone (RFC 1995 2), an
	// older one the whole zone.
	serial := recs[0].(*mdns.SOA).Serial
	soaRE := regexp.MustCompile(`(?m)^ma-societe\.fr\.\s+\d+\s+IN\s+SOA\s`)
	if out := d.dig(t, "+tcp", "ma-societe.fr", fmt.Sprintf("IXFR=%d", serial)); len(soaRE.FindAllString(out, -1)) != 1 || strings.Contains(out, "IN\tMX") {
		t.Errorf("dig IXFR=%d (the current serial), want the SOA alone:\n%s", serial, out)
	}
	if out := d.dig(t, "+tcp", "ma-societe.fr", fmt.Sprintf("IXFR=%d", serial-1)); len(soaRE.FindAllString(out, -1)) != 2 || !strings.Contains(out, "IN\tMX") {
		t.Errorf("dig IXFR=%d (an older serial), want the whole zone:\n%s", serial-1, out)
	}
}

// TestDNSTruncation: an answer larger than 512 bytes (thirty name
// servers with their glue, the largest the schema lets a test build)
// is truncated over UDP without EDNS0 and whole over TCP.
func TestDNSTruncation(t *testing.T) {
	t.Parallel()
	var ns []string
	for i := 1; i <= 30; i++ {
		ns = append(ns, fmt.Sprintf("ns%d.ma-societe.fr", i))
	}
	d := startDNS(t, dnsDoc(dnsDocOpts{Nameservers: ns}))

	// miekg: UDP without EDNS0 (512 bytes), then TCP.
	q := new(mdns.Msg)
	q.SetQuestion("ma-societe.fr.", mdns.TypeNS)
	r, _, err := (&mdns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(q, d.udp)
	if err != nil && r == nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 30 {
		t.Errorf("NS over UDP, no EDNS0: TC %v, %d answers; want TC, fewer than 30", r.Truncated, len(r.Answer))
	}
	r, _, err = (&mdns.Client{Net: "tcp", Timeout: 3 * time.Second}).Exchange(q, d.tcp)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(rrs(r.Answer, mdns.TypeNS)) != 30 || len(rrs(r.Extra, mdns.TypeA)) != 30 {
		t.Errorf("NS over TCP: TC %v, %d NS, %d glue; want 30 and 30", r.Truncated, len(rrs(r.Answer, mdns.TypeNS)), len(rrs(r.Extra, mdns.TypeA)))
	}

	// dig: +ignore shows the truncated answer, +tcp the whole.
	out := d.dig(t, "+noedns", "+ignore", "+norec", "ma-societe.fr", "NS")
	if !regexp.MustCompile(`flags: qr aa tc;`).MatchString(out) {
		t.Errorf("dig +noedns +ignore NS: want flags qr aa tc:\n%s", out)
	}
	out = d.dig(t, "+tcp", "+norec", "ma-societe.fr", "NS")
	if !regexp.MustCompile(`flags: qr aa;.* ANSWER: 30, AUTHORITY: 0, ADDITIONAL: 31`).MatchString(out) {
		t.Errorf("dig +tcp NS: want 30 answers and 30 glue (and the OPT):\n%s", out)
	}
}

// TestDNSMetrics: mailfountain_dns_queries_total counts the queries by
// transport and rcode.
func TestDNSMetrics(t *testing.T) {
	t.Parallel()
	d := startDNS(t, dnsDoc(dnsDocOpts{}), "--metrics", "127.0.0.1:0")
	url := "http://" + d.addr("metrics") + "/metrics"
	const (
		udpOK      = `mailfountain_dns_queries_total{rcode="noerror",transport="udp"}`
		udpNX      = `mailfountain_dns_queries_total{rcode="nxdomain",transport="udp"}`
		udpRefused = `mailfountain_dns_queries_total{rcode="refused",transport="udp"}`
		tcpOK      = `mailfountain_dns_queries_total{rcode="noerror",transport="tcp"}`
	)
	before, err := scrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		d.ask(t, "mail.ma-societe.fr.", mdns.TypeA)
	}
	for range 3 {
		d.ask(t, "nothing.ma-societe.fr.", mdns.TypeA)
	}
	for range 2 {
		d.ask(t, "example.com.", mdns.TypeA)
	}
	if _, err := d.exchange("ma-societe.fr.", mdns.TypeMX, true); err != nil {
		t.Fatal(err)
	}
	d.dig(t, "+tcp", "ma-societe.fr", "SOA")
	waitMetrics(t, url, map[string]float64{
		udpOK:      before[udpOK] + 5,
		udpNX:      before[udpNX] + 3,
		udpRefused: before[udpRefused] + 2,
		tcpOK:      before[tcpOK] + 2,
	})
}
