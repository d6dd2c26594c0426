package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// resolverAddr is the server `dns check` asks: flag as given ("ADDR" or
// "ADDR:PORT", port 53 by default), or else the first nameserver of
// resolvConf (/etc/resolv.conf).
func resolverAddr(flag, resolvConf string) (string, error) {
	if flag == "" {
		cfg, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return "", fmt.Errorf("find a resolver to ask (--resolver ADDR): %w", err)
		}
		if len(cfg.Servers) == 0 {
			return "", fmt.Errorf("find a resolver to ask: no nameserver in %s (--resolver ADDR)", resolvConf)
		}
		return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
	}
	if host, port, err := net.SplitHostPort(flag); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("--resolver %q: want ADDR or ADDR:PORT", flag)
		}
		return flag, nil
	}
	if strings.ContainsAny(flag, "[]") {
		return "", fmt.Errorf("--resolver %q: want ADDR or ADDR:PORT", flag)
	}
	return net.JoinHostPort(flag, "53"), nil // an IPv6 address without a port, too
}

// dnsCheckRecord is one record set of `dns check --json`.
type dnsCheckRecord struct {
	Name      string   `json:"name"` // fully qualified
	Type      string   `json:"type"`
	Kind      string   `json:"kind"`    // MX, A, SPF, DKIM, DMARC, MTA-STS, ...
	Verdict   string   `json:"verdict"` // match, missing, differs, error
	Expected  []string `json:"expected"`
	Published []string `json:"published"`
	Note      string   `json:"note,omitempty"`
}

// dnsCheck asks resolver for each record set of expected and prints what
// is published against what is expected; the status is exitOK only when
// every record set matches.
func (c *cli) dnsCheck(ctx context.Context, domain, resolver string, expected []dns.RR) int {
	findings := (&dnszone.Checker{Resolver: resolver}).Check(ctx, expected)
	ok := 0
	for _, f := range findings {
		if f.Verdict == dnszone.Match {
			ok++
		}
	}
	code := exitOK
	if ok != len(findings) {
		code = exitFail
	}
	if c.json {
		recs := make([]dnsCheckRecord, len(findings))
		for i, f := range findings {
			recs[i] = dnsCheckRecord{Name: f.Name, Type: dns.TypeToString[f.Type], Kind: f.Kind, Verdict: string(f.Verdict),
				Expected: rrStrings(f.Expected), Published: rrStrings(f.Published), Note: f.Note}
		}
		if c.printJSON(struct {
			Domain   string           `json:"domain"`
			Resolver string           `json:"resolver"`
			OK       bool             `json:"ok"`
			Records  []dnsCheckRecord `json:"records"`
		}{domain, resolver, code == exitOK, recs}) != exitOK {
			return exitFail
		}
		return code
	}
	fmt.Fprintf(c.stdout, "; DNS records of %s as the resolver %s answers them\n", domain, resolver)
	for _, f := range findings {
		fmt.Fprintf(c.stdout, "%-8s %-40s %s", f.Kind, f.Name, f.Verdict)
		if f.Note != "" {
			fmt.Fprintf(c.stdout, " (%s)", f.Note)
		}
		fmt.Fprintln(c.stdout)
		if f.Verdict == dnszone.Match || f.Verdict == dnszone.Error {
			continue
		}
		// What to create or correct at the registrar, and what is there.
		for _, rr := range f.Expected {
			fmt.Fprintf(c.stdout, "    expected   %s\n", rr)
		}
		for _, rr := range f.Published {
			fmt.Fprintf(c.stdout, "    published  %s\n", rr)
		}
	}
	fmt.Fprintf(c.stdout, "%d of %d record sets match\n", ok, len(findings))
	return code
}

// rrStrings is records in zone-file syntax; never nil, for JSON.
func rrStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}
