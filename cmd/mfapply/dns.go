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

// dns is `mfapply dns records DOMAIN`.
func (c *cli) dns(ctx context.Context, args []string) int {
	fs := c.flags("dns")
	operands, code := c.parse(fs, args, 1, 2)
	if code >= 0 {
		return code
	}
	switch operands[0] {
	case "records":
		if len(operands) != 2 {
			return c.usageError("dns", "dns records takes one DOMAIN")
		}
		return c.dnsRecords(ctx, operands[1])
	default:
		return c.usageError("dns", fmt.Sprintf("unknown dns command %q: records", operands[0]))
	}
}

// dnsRecord is one record of `dns records --json`.
type dnsRecord struct {
	Name  string `json:"name"` // fully qualified, with the final dot
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"` // the data, as in zone-file syntax
}

// dnsRecords prints the records a domain of the applied document needs
// at its registrar: all of them for a domain the box does not serve;
// the delegation (NS and glue) for one it serves.
func (c *cli) dnsRecords(ctx context.Context, domain string) int {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if _, ok := mdns.IsDomainName(domain); !ok || domain == "" || strings.ContainsAny(domain, "/\\") {
		return c.fail("dns", fmt.Errorf("%q is not a domain name", domain))
	}
	st, version, err := c.appliedState(ctx)
	if err != nil {
		return c.fail("dns", err)
	}
	var d *schema.Domain
	for i := range st.Domains {
		if strings.ToLower(st.Domains[i].Name) == domain {
			d = &st.Domains[i]
		}
	}
	if d == nil {
		return c.fail("dns", fmt.Errorf("no domain %s in the applied document (version %d)", domain, version))
	}

	pub, from := netip.Addr{}, "network.public_address"
	if a, err := netip.ParseAddr(st.Network.PublicAddress); err == nil {
		pub = a
	} else if pub, err = hostnet.RouteAddress(ctx); err == nil {
		from = "the address of the default route"
	} else {
		from = "none: " + err.Error()
	}
	var dkim map[string]string
	keys, err := dkimsign.Load(dkimsign.Dir(c.dataDir), domain)
	switch {
	case errors.Is(err, dkimsign.ErrNoKeys):
	case err != nil:
		return c.fail("dns", err)
	default:
		txts, err := keys.Records()
		if err != nil {
			return c.fail("dns", err)
		}
		dkim = map[string]string{}
		for _, t := range txts {
			dkim[t.Name] = t.Value()
		}
	}
	in := dnszone.PublicInputs(pub, dkim)

	var rrs []mdns.RR
	if d.DNS.Delegated {
		z, err := dnszone.Build(st, d, in, 0)
		if err != nil {
			return c.fail("dns", err)
		}
		ns := map[string]bool{}
		for _, n := range dnszone.Nameservers(d) {
			ns[n] = true
		}
		for _, rr := range z.Records {
			h := rr.Header()
			if h.Rrtype == mdns.TypeNS || ns[h.Name] && (h.Rrtype == mdns.TypeA || h.Rrtype == mdns.TypeAAAA) {
				rrs = append(rrs, rr)
			}
		}
	} else if rrs, err = dnszone.Records(st, d, in); err != nil {
		return c.fail("dns", err)
	}

	if c.json {
		out := struct {
			Domain        string      `json:"domain"`
			Delegated     bool        `json:"delegated"`
			PublicAddress string      `json:"public_address,omitempty"`
			DKIMKeys      bool        `json:"dkim_keys"`
			Records       []dnsRecord `json:"records"`
		}{Domain: domain, Delegated: d.DNS.Delegated, DKIMKeys: dkim != nil, Records: []dnsRecord{}}
		if pub.IsValid() {
			out.PublicAddress = pub.String()
		}
		for _, rr := range rrs {
			h := rr.Header()
			out.Records = append(out.Records, dnsRecord{Name: h.Name, Type: mdns.TypeToString[h.Rrtype], TTL: h.Ttl, Value: strings.TrimPrefix(rr.String(), h.String())})
		}
		return c.printJSON(out)
	}
	if d.DNS.Delegated {
		fmt.Fprintf(c.stdout, "; %s is delegated to the box, which serves its zone: the registrar needs only\n; these name servers (and the glue of those inside the domain)\n", domain)
	} else {
		fmt.Fprintf(c.stdout, "; the records of %s to create at its registrar\n", domain)
	}
	fmt.Fprintf(c.stdout, "; public address: %s (%s)\n", showAddr(pub), from)
	if dkim == nil {
		fmt.Fprintf(c.stdout, "; no DKIM keys in %s yet: apply the document, then run this again\n", dkimsign.Dir(c.dataDir))
	}
	fmt.Fprint(c.stdout, dnszone.RecordsText(rrs))
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
