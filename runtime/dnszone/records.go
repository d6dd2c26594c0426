package dnszone

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/schema"
)

// Inputs are what a domain's records need besides the document: the
// facts other reconcilers publish.
type Inputs struct {
	// Public4 and Public6 are the box's public addresses: the A and the
	// AAAA of mail.<domain>, mta-sts.<domain> and the in-zone name
	// servers. An invalid one gives no record of its type.
	Public4, Public6 netip.Addr
	// DKIM are the DKIM TXT records of the box's keys (facts.DKIMKeys):
	// record name without the final dot → value. Those under
	// _domainkey.<domain> are the domain's.
	DKIM map[string]string
}

// PublicInputs puts one public address in the field of its family.
func PublicInputs(addr netip.Addr, dkim map[string]string) Inputs {
	in := Inputs{DKIM: dkim}
	switch addr = addr.Unmap(); {
	case addr.Is4():
		in.Public4 = addr
	case addr.Is6():
		in.Public6 = addr
	}
	return in
}

// The TTLs and timers the document does not set. The NS records and
// their glue change only when the document says so, hence a day; the SOA
// itself, and with it how long a resolver caches a name that does not
// exist (RFC 2308: the smaller of the SOA's TTL and its minimum), an
// hour, so that a new host name is seen soon.
const (
	NSTTL      = 86400
	SOATTL     = 3600
	SOARefresh = 3600    // secondaries check the serial hourly (NOTIFY comes first)
	SOARetry   = 900     // and every 15 minutes after a failed check
	SOAExpire  = 1209600 // they stop answering after two weeks without the primary
	SOAMinimum = 3600    // negative caching
)

// MTASTSMaxAge is the max_age of the MTA-STS policy: a week, as RFC 8461
// suggests for a policy in production.
const MTASTSMaxAge = 604800

// Host is the box's name in domain: "mail.ma-societe.fr" for the default
// system.hostname, without the final dot.
func Host(st *schema.State, domain string) string {
	h := st.System.Hostname
	if h == "" {
		h = "mail"
	}
	return h + "." + domain
}

// MTASTSPolicy is the MTA-STS policy (RFC 8461) of domain, which the web
// server is to serve at https://mta-sts.<domain>/.well-known/mta-sts.txt
// (it does not exist yet: until it does, senders find the record but no
// policy, and deliver as without MTA-STS). The mode is enforce only when
// the document names a certificate (system.tls): with the box's
// self-signed one, senders that enforce would refuse to deliver.
func MTASTSPolicy(st *schema.State, domain string) string {
	mode := "testing"
	if st.System.TLS != nil {
		mode = "enforce"
	}
	return fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %d\r\n", mode, Host(st, domain), MTASTSMaxAge)
}

// mtastsID is the policy's id: a digest of it, so that it changes when
// the policy does (1 to 32 letters and digits, RFC 8461 3.1).
func mtastsID(policy string) string {
	sum := sha256.Sum256([]byte(policy))
	return hex.EncodeToString(sum[:16])
}

// Records are the records domain d needs, derived from the document and
// in, without SOA and NS: what to create at a registrar for a domain the
// box does not serve, and the body of the zone of one it serves. They
// are in Sort's order.
func Records(st *schema.State, d *schema.Domain, in Inputs) ([]dns.RR, error) {
	origin := dns.Fqdn(strings.ToLower(d.Name))
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("records of %q: not a domain name", d.Name)
	}
	ttl := d.DNS.TTL
	host := dns.Fqdn(strings.ToLower(Host(st, d.Name)))
	var rrs []dns.RR
	hdr := func(name string, t uint16, ttl int) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: uint32(ttl)}
	}
	addr := func(name string, a netip.Addr) {
		a = a.Unmap()
		switch {
		case a.Is4():
			rrs = append(rrs, &dns.A{Hdr: hdr(name, dns.TypeA, ttl.A), A: a.AsSlice()})
		case a.Is6():
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl.A), AAAA: a.AsSlice()})
		}
	}
	txt := func(name, value string) {
		rrs = append(rrs, &dns.TXT{Hdr: hdr(name, dns.TypeTXT, ttl.TXT), Txt: dkimsign.SplitTXT(value)})
	}
	box := func(name string) {
		addr(name, in.Public4)
		addr(name, in.Public6)
	}

	box(host)
	rrs = append(rrs, &dns.MX{Hdr: hdr(origin, dns.TypeMX, ttl.MX), Preference: 10, Mx: host})

	spf := "v=spf1 mx"
	if st.SMTP.Mode == "relay" && st.SMTP.Relay != nil && st.SMTP.Relay.Host != "" {
		if a, err := netip.ParseAddr(st.SMTP.Relay.Host); err == nil {
			if a.Unmap().Is4() {
				spf += " ip4:" + a.Unmap().String()
			} else {
				spf += " ip6:" + a.String()
			}
		} else {
			spf += " a:" + strings.ToLower(strings.TrimSuffix(st.SMTP.Relay.Host, "."))
		}
	}
	txt(origin, spf+" -all")

	suffix := "._domainkey." + strings.TrimSuffix(origin, ".")
	for _, name := range slices.Sorted(maps.Keys(in.DKIM)) {
		n := strings.ToLower(name)
		sel, ok := strings.CutSuffix(n, suffix)
		if !ok || sel == "" || strings.Contains(sel, ".") {
			continue
		}
		txt(dns.Fqdn(n), in.DKIM[name])
	}

	dmarc := d.DNS.DMARC
	if dmarc == "" {
		dmarc = "none"
	}
	txt("_dmarc."+origin, "v=DMARC1; p="+dmarc)

	txt("_mta-sts."+origin, "v=STSv1; id="+mtastsID(MTASTSPolicy(st, d.Name)))
	box("mta-sts." + origin)

	for _, label := range slices.Sorted(maps.Keys(d.DNS.Hosts)) {
		a, err := netip.ParseAddr(d.DNS.Hosts[label])
		if err != nil {
			return nil, fmt.Errorf("records of %s: host %s: %w", d.Name, label, err)
		}
		addr(ownerOf(label, origin), a)
	}
	return Sort(dedup(rrs)), nil
}

// ownerOf is the owner name of a label of dns.hosts: "@" is the apex.
func ownerOf(label, origin string) string {
	if label == "@" {
		return origin
	}
	return strings.ToLower(label) + "." + origin
}

// dedup drops a record equal to one before it (a host of dns.hosts that
// repeats mail.<domain> with the box's address).
func dedup(rrs []dns.RR) []dns.RR {
	seen := map[string]bool{}
	out := rrs[:0]
	for _, rr := range rrs {
		k := rr.String()
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, rr)
	}
	return out
}

// Nameservers are domain d's name servers, fully qualified: the
// document's, else ns1.<domain>.
func Nameservers(d *schema.Domain) []string {
	if len(d.DNS.Nameservers) == 0 {
		return []string{"ns1." + dns.Fqdn(strings.ToLower(d.Name))}
	}
	out := make([]string, len(d.DNS.Nameservers))
	for i, n := range d.DNS.Nameservers {
		out[i] = dns.Fqdn(strings.ToLower(n))
	}
	return out
}

// Build derives the zone of domain d with serial: the SOA (its primary
// the first name server, its contact hostmaster.<domain>), the NS
// records, the glue of the name servers inside the zone that dns.hosts
// does not name (the box's public address: the box is their server), and
// Records. The secondaries are the document's.
func Build(st *schema.State, d *schema.Domain, in Inputs, serial uint32) (Zone, error) {
	origin := dns.Fqdn(strings.ToLower(d.Name))
	body, err := Records(st, d, in)
	if err != nil {
		return Zone{}, err
	}
	ns := Nameservers(d)
	rrs := []dns.RR{&dns.SOA{
		Hdr:     dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: SOATTL},
		Ns:      ns[0],
		Mbox:    "hostmaster." + origin,
		Serial:  serial,
		Refresh: SOARefresh,
		Retry:   SOARetry,
		Expire:  SOAExpire,
		Minttl:  SOAMinimum,
	}}
	named := map[string]bool{}
	for _, rr := range body {
		named[rr.Header().Name] = true
	}
	for _, n := range ns {
		rrs = append(rrs, &dns.NS{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: NSTTL}, Ns: n})
		if !dns.IsSubDomain(origin, n) || named[n] {
			continue
		}
		for _, a := range []netip.Addr{in.Public4, in.Public6} {
			switch {
			case a.Is4():
				rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: uint32(d.DNS.TTL.A)}, A: a.AsSlice()})
			case a.Is6():
				rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: uint32(d.DNS.TTL.A)}, AAAA: a.AsSlice()})
			}
		}
	}
	z := Zone{Origin: origin, Serial: serial, Records: Sort(dedup(append(rrs, body...)))}
	for _, s := range d.DNS.Secondaries {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Zone{}, fmt.Errorf("zone of %s: secondary %q: %w", d.Name, s, err)
		}
		z.Secondaries = append(z.Secondaries, a.Unmap())
	}
	return z, nil
}

// typeOrder places the types in a zone's text: the apex's SOA and NS
// first, then by name, each name's addresses before its other records.
var typeOrder = map[uint16]int{dns.TypeSOA: 0, dns.TypeNS: 1, dns.TypeA: 2, dns.TypeAAAA: 3, dns.TypeCNAME: 4, dns.TypeMX: 5, dns.TypeTXT: 6}

// Sort sorts rrs in place, in the order of a zone's text, and returns
// them: the SOA, the apex's NS, then by owner (the apex first, then its
// names in DNS canonical order, RFC 4034 6.1), type and text.
func Sort(rrs []dns.RR) []dns.RR {
	slices.SortStableFunc(rrs, func(a, b dns.RR) int {
		ha, hb := a.Header(), b.Header()
		if ha.Rrtype == dns.TypeSOA || hb.Rrtype == dns.TypeSOA {
			return cmp.Compare(rank(ha.Rrtype == dns.TypeSOA), rank(hb.Rrtype == dns.TypeSOA))
		}
		if c := compareNames(ha.Name, hb.Name); c != 0 {
			return c
		}
		if c := cmp.Compare(typeRank(ha.Rrtype), typeRank(hb.Rrtype)); c != 0 {
			return c
		}
		return strings.Compare(a.String(), b.String())
	})
	return rrs
}

func rank(first bool) int {
	if first {
		return 0
	}
	return 1
}

func typeRank(t uint16) int {
	if r, ok := typeOrder[t]; ok {
		return r
	}
	return 100 + int(t)
}

// compareNames orders names canonically: by their labels from the right,
// so that a name comes right before those under it.
func compareNames(a, b string) int {
	la, lb := dns.SplitDomainName(strings.ToLower(a)), dns.SplitDomainName(strings.ToLower(b))
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(la), len(lb))
}

// Text is the zone in zone-file syntax (RFC 1035 5), one record a line in
// Sort's order, after a comment naming the zone, its serial and its
// secondaries: what DATA/dns/<domain>.zone holds, and what ParseText
// reads back.
func (z Zone) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; zone %s, serial %d, written by MailFountain's DNS reconciler\n", z.Origin, z.Serial)
	secs := make([]string, len(z.Secondaries))
	for i, s := range z.Secondaries {
		secs[i] = s.String()
	}
	fmt.Fprintf(&b, "%s%s\n", secondariesMark, strings.Join(secs, " "))
	fmt.Fprintf(&b, "$ORIGIN %s\n", z.Origin)
	writeRecords(&b, z.Records)
	return b.String()
}

// RecordsText is records in zone-file syntax, one a line, in Sort's
// order (records is not changed).
func RecordsText(records []dns.RR) string {
	var b strings.Builder
	writeRecords(&b, Sort(slices.Clone(records)))
	return b.String()
}

func writeRecords(b *strings.Builder, rrs []dns.RR) {
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
}

// secondariesMark starts the comment of Text that lists the zone's
// secondaries (the zone file is the only place they are kept).
const secondariesMark = "; secondaries:"

// ParseText reads a zone that Text wrote (or a person edited): its
// records, with the serial of its SOA, and the secondaries of its
// comment. A zone without an SOA first, with names outside origin, with
// an incomplete record or with $GENERATE is refused ($INCLUDE is not
// followed).
func ParseText(origin, text string) (Zone, error) {
	origin = dns.Fqdn(strings.ToLower(origin))
	z := Zone{Origin: origin}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, secondariesMark)
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return Zone{}, fmt.Errorf("zone %s: secondary %q: %w", origin, f, err)
			}
			z.Secondaries = append(z.Secondaries, a)
		}
		break
	}
	// $GENERATE can make millions of records of a line: Text never
	// writes it, and a zone file of the box has no use for it.
	if strings.Contains(strings.ToUpper(text), "$GENERATE") {
		return Zone{}, fmt.Errorf("zone %s: $GENERATE is not read", origin)
	}
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		if !dns.IsSubDomain(origin, h.Name) {
			return Zone{}, fmt.Errorf("zone %s: record %s is outside it", origin, h.Name)
		}
		// The parser takes records with no data (as dynamic updates
		// write them); a zone has none: each record must read back as
		// itself.
		if again, err := dns.NewRR(rr.String()); err != nil || again == nil || again.String() != rr.String() {
			return Zone{}, fmt.Errorf("zone %s: record %q is incomplete", origin, rr.String())
		}
		z.Records = append(z.Records, rr)
	}
	if err := zp.Err(); err != nil {
		return Zone{}, fmt.Errorf("zone %s: %w", origin, err)
	}
	if len(z.Records) == 0 {
		return Zone{}, fmt.Errorf("zone %s: no records", origin)
	}
	soa, ok := z.Records[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != origin {
		return Zone{}, fmt.Errorf("zone %s: the first record is not its SOA", origin)
	}
	z.Serial = soa.Serial
	Sort(z.Records)
	return z, nil
}

// ContentHash identifies the zone's content, its secondaries included:
// every record, the SOA's serial left out, so that a zone derived again
// from the same document and facts has the same hash whatever its
// serial.
func (z Zone) ContentHash() string {
	h := sha256.New()
	rrs := Sort(slices.Clone(z.Records))
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			c := *soa
			c.Serial = 0
			rr = &c
		}
		h.Write([]byte(rr.String()))
		h.Write([]byte{'\n'})
	}
	for _, s := range z.Secondaries {
		fmt.Fprintf(h, "secondary %s\n", s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WithSerial is a copy of z with serial, in its SOA too (the records are
// shared, but for the SOA).
func (z Zone) WithSerial(serial uint32) (Zone, error) {
	if len(z.Records) == 0 {
		return Zone{}, errors.New("a zone without records")
	}
	soa, ok := z.Records[0].(*dns.SOA)
	if !ok {
		return Zone{}, fmt.Errorf("zone %s: the first record is not its SOA", z.Origin)
	}
	c := *soa
	c.Serial = serial
	z.Records = append([]dns.RR{&c}, z.Records[1:]...)
	z.Serial = serial
	return z, nil
}

// NextSerial is the serial after prev, on the day of now (UTC):
// YYYYMMDD00 of that day, or prev+1 when that is not greater (a second
// change on the same day, or a clock set back). Serials only grow, as
// secondaries require (RFC 1982 arithmetic aside: a step is always +1 or
// to a later day).
func NextSerial(prev uint32, now time.Time) uint32 {
	y, m, d := now.UTC().Date()
	today := uint32(y)*1000000 + uint32(m)*10000 + uint32(d)*100
	if today > prev {
		return today
	}
	return prev + 1
}
