package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/hostnet"
	"mailfountain.dev/mailfountain/schema"
)

// dns is `mfapply dns records DOMAIN` and `mfapply dns check DOMAIN`.
func (c *cli) dns(ctx context.Context, args []string) int {
	fs := c.flags("dns")
	resolver := fs.String("resolver", "", "")
	operands, code := c.parse(fs, args, 1, 2)
	if code >= 0 {
		return code
	}
	switch operands[0] {
	case "records", "check":
		if len(operands) != 2 {
			return c.usageError("dns", fmt.Sprintf("dns %s takes one DOMAIN", operands[0]))
		}
	default:
		return c.usageError("dns", fmt.Sprintf("unknown dns command %q: records or check", operands[0]))
	}
	if operands[0] == "records" && *resolver != "" {
		return c.usageError("dns", "--resolver is for dns check")
	}
	want, err := c.expectedRecords(ctx, operands[1])
	if err != nil {
		return c.fail("dns", err)
	}
	if operands[0] == "records" {
		return c.dnsRecords(want)
	}
	addr, err := resolverAddr(*resolver, "/etc/resolv.conf")
	if err != nil {
		return c.usageError("dns", err.Error())
	}
	// For a delegated domain, what is checked is that the delegation is
	// live: the resolver finds the box's zone, all of it.
	rrs := want.records
	if want.zone != nil {
		rrs = want.zone.Records
	}
	return c.dnsCheck(ctx, want.domain, addr, rrs)
}

// dnsRecord is one record of `dns records --json`.
type dnsRecord struct {
	Name  string `json:"name"` // fully qualified, with the final dot
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"` // the data, as in zone-file syntax
}

// expected is what a domain of the applied document needs in the DNS.
type expected struct {
	domain    string
	delegated bool
	pub       netip.Addr
	from      string // where pub comes from
	dkim      map[string]string
	// records are those to create at the registrar: all of them for a
	// domain the box does not serve, the delegation (NS and glue) for
	// one it serves.
	records []mdns.RR
	// zone is, for a delegated domain, the zone the box serves.
	zone *dnszone.Zone
}

// expectedRecords derives the records of a domain of the applied
// document, with the box's public address and DKIM keys, as the DNS
// reconciler does.
func (c *cli) expectedRecords(ctx context.Context, domain string) (*expected, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if _, ok := mdns.IsDomainName(domain); !ok || domain == "" || strings.ContainsAny(domain, "/\\") {
		return nil, fmt.Errorf("%q is not a domain name", domain)
	}
	st, version, err := c.appliedState(ctx)
	if err != nil {
		return nil, err
	}
	var d *schema.Domain
	for i := range st.Domains {
		if strings.ToLower(st.Domains[i].Name) == domain {
			d = &st.Domains[i]
		}
	}
	if d == nil {
		return nil, fmt.Errorf("no domain %s in the applied document (version %d)", domain, version)
	}
	e := &expected{domain: domain, delegated: d.DNS.Delegated, from: "network.public_address"}
	if a, err := netip.ParseAddr(st.Network.PublicAddress); err == nil {
		e.pub = a
	} else if e.pub, err = hostnet.RouteAddress(ctx); err == nil {
		e.from = "the address of the default route"
	} else {
		e.from = "none: " + err.Error()
	}
	keys, err := dkimsign.Load(dkimsign.Dir(c.dataDir), domain)
	switch {
	case errors.Is(err, dkimsign.ErrNoKeys):
	case err != nil:
		return nil, err
	default:
		txts, err := keys.Records()
		if err != nil {
			return nil, err
		}
		e.dkim = map[string]string{}
		for _, t := range txts {
			e.dkim[t.Name] = t.Value()
		}
	}
	in := dnszone.PublicInputs(e.pub, e.dkim)
	if !d.DNS.Delegated {
		if e.records, err = dnszone.Records(st, d, in); err != nil {
			return nil, err
		}
		return e, nil
	}
	z, err := dnszone.Build(st, d, in, 0)
	if err != nil {
		return nil, err
	}
	e.zone = &z
	ns := map[string]bool{}
	for _, n := range dnszone.Nameservers(d) {
		ns[n] = true
	}
	for _, rr := range z.Records {
		h := rr.Header()
		if h.Rrtype == mdns.TypeNS || ns[h.Name] && (h.Rrtype == mdns.TypeA || h.Rrtype == mdns.TypeAAAA) {
			e.records = append(e.records, rr)
		}
	}
	return e, nil
}

// dnsRecords prints the records to create at the registrar.
func (c *cli) dnsRecords(e *expected) int {
	if c.json {
		out := struct {
			Domain        string      `json:"domain"`
			Delegated     bool        `json:"delegated"`
			PublicAddress string      `json:"public_address,omitempty"`
			DKIMKeys      bool        `json:"dkim_keys"`
			Records       []dnsRecord `json:"records"`
		}{Domain: e.domain, Delegated: e.delegated, DKIMKeys: e.dkim != nil, Records: []dnsRecord{}}
		if e.pub.IsValid() {
			out.PublicAddress = e.pub.String()
		}
		for _, rr := range e.records {
			h := rr.Header()
			out.Records = append(out.Records, dnsRecord{Name: h.Name, Type: mdns.TypeToString[h.Rrtype], TTL: h.Ttl, Value: strings.TrimPrefix(rr.String(), h.String())})
		}
		return c.printJSON(out)
	}
	if e.delegated {
		fmt.Fprintf(c.stdout, "; %s is delegated to the box, which serves its zone: the registrar needs only\n; these name servers (and the glue of those inside the domain)\n", e.domain)
	} else {
		fmt.Fprintf(c.stdout, "; the records of %s to create at its registrar\n", e.domain)
	}
	fmt.Fprintf(c.stdout, "; public address: %s (%s)\n", showAddr(e.pub), e.from)
	if e.dkim == nil {
		fmt.Fprintf(c.stdout, "; no DKIM keys in %s yet: apply the document, then run this again\n", dkimsign.Dir(c.dataDir))
	}
	fmt.Fprint(c.stdout, dnszone.RecordsText(e.records))
	return exitOK
}

func showAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown, no A or AAAA record"
	}
	return a.String()
}

// appliedState is the document of the latest version, and its number.
func (c *cli) appliedState(ctx context.Context) (*schema.State, int, error) {
	b, err := c.open(ctx, true)
	if err != nil {
		return nil, 0, err
	}
	defer b.Close()
	hist, err := b.History(ctx)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, v := range hist {
		n = max(n, v.N)
	}
	if n == 0 {
		return nil, 0, errors.New("nothing applied yet: apply a document with the domain first")
	}
	v, err := b.Show(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	var st schema.State
	if err := json.Unmarshal(v.State, &st); err != nil {
		return nil, 0, fmt.Errorf("the document of version %d: %w", n, err)
	}
	return &st, n, nil
}
