// Command serve runs MailFountain's side of bench/dns.sh: it loads a zone
// file into a dnszone.Set, publishes it on a dnszone.Live, and serves it
// with runtime/dnsd, as mailfountaind does once the DNS reconciler has
// published the zone.
//
//	serve -zone FILE -origin ORIGIN -listen ADDR
//
// serves the zone over UDP and TCP at ADDR until SIGTERM or SIGINT, and
// writes "listening ADDR" to stderr once it does.
//
//	serve -zone FILE -origin ORIGIN -check ADDR
//
// asks the DNS server at ADDR for every record set of the zone
// (dnszone.Check) and exits with status 1, the differences on stderr,
// unless every one matches: the bench measures servers that all publish
// the same zone.
//
// The serving part needs runtime/dnsd, built by another branch: it is in
// dnsd.go, behind the build tag "dnsd" (go build -tags dnsd), until that
// package is on main; without the tag, -listen fails with a message
// saying so, and -check works.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

func main() {
	zoneFile := flag.String("zone", "", "the zone file")
	origin := flag.String("origin", "", "the zone's origin, e.g. mf-bench.test.")
	listen := flag.String("listen", "", "serve the zone at this host:port (UDP and TCP)")
	check := flag.String("check", "", "instead of serving, check that the DNS server at this host:port publishes the zone")
	flag.Parse()
	if *zoneFile == "" || *origin == "" || (*listen == "") == (*check == "") {
		fmt.Fprintln(os.Stderr, "usage: serve -zone FILE -origin ORIGIN (-listen ADDR | -check ADDR)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *zoneFile, *origin, *listen, *check); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, zoneFile, origin, listen, check string) error {
	f, err := os.Open(zoneFile)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	z, err := loadZone(f, origin, zoneFile)
	if err != nil {
		return err
	}
	if check != "" {
		return checkZone(ctx, check, z)
	}
	fmt.Fprintf(os.Stderr, "loaded %d records of %s in %s\n", len(z.Records), z.Origin, time.Since(start).Round(time.Millisecond))
	var live dnszone.Live
	live.Publish(&dnszone.Set{Zones: []dnszone.Zone{z}})
	return serve(ctx, &live, listen)
}

// loadZone reads a zone file into a Zone as the DNS reconciler makes them:
// owners in lower case, at or under the origin, the SOA first.
func loadZone(f io.Reader, origin, name string) (dnszone.Zone, error) {
	origin = strings.ToLower(dns.Fqdn(origin))
	z := dnszone.Zone{Origin: origin}
	zp := dns.NewZoneParser(f, origin, name)
	var soa dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		if !dns.IsSubDomain(origin, h.Name) {
			return z, fmt.Errorf("%s: %s is outside the zone %s", name, h.Name, origin)
		}
		if s, ok := rr.(*dns.SOA); ok {
			if soa != nil || h.Name != origin {
				return z, fmt.Errorf("%s: an SOA at %s: a zone has one, at its origin", name, h.Name)
			}
			soa, z.Serial = rr, s.Serial
			continue
		}
		z.Records = append(z.Records, rr)
	}
	if err := zp.Err(); err != nil {
		return z, fmt.Errorf("read the zone file: %w", err)
	}
	if soa == nil {
		return z, fmt.Errorf("%s: no SOA record", name)
	}
	z.Records = slices.Insert(z.Records, 0, soa)
	return z, nil
}

// checkZone checks that the server at addr publishes every record set of
// z.
func checkZone(ctx context.Context, addr string, z dnszone.Zone) error {
	c := &dnszone.Checker{Resolver: addr, Parallel: 8, Timeout: 2 * time.Second}
	findings := c.Check(ctx, z.Records)
	bad := 0
	for _, f := range findings {
		if f.Verdict != dnszone.Match {
			if bad < 10 {
				fmt.Fprintln(os.Stderr, f)
			}
			bad++
		}
	}
	if bad > 0 {
		return errors.New(fmt.Sprint(bad, " of ", len(findings), " record sets do not match"))
	}
	fmt.Printf("%d record sets match\n", len(findings))
	return nil
}
