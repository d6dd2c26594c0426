// Command serve runs MailFountain's side of bench/dns.sh: it loads a zone
// file into a dnszone.Set, publishes it on a dnszone.Live, and serves it
// with runtime/dnsd, as mailfountaind does once the DNS reconciler has
// published the zone.
//
//	serve -zone FILE -origin ORIGIN -listen ADDR
//
// serves the zone over UDP and TCP at ADDR until SIGTERM or SIGINT, and
// writes "listening ADDR" to stderr once it does.
// On SIGHUP it publishes the zone again with the next serial, and writes
// "swap serial N: D ms" to stderr: the time from the Publish to the first
// answer with that serial (queried over UDP at ADDR, in a loop).
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
	"sync"
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
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			z = bumpSerial(z)
			d, err := swap(ctx, &live, z, listen)
			if err != nil {
				fmt.Fprintln(os.Stderr, "swap:", err)
				continue
			}
			fmt.Fprintf(os.Stderr, "swap serial %d: %.1f ms\n", z.Serial, float64(d.Microseconds())/1000)
		}
	})
	return serve(ctx, &live, listen)
}

// bumpSerial returns z with its serial one more: another zone of the same
// size, for a swap.
func bumpSerial(z dnszone.Zone) dnszone.Zone {
	soa := dns.Copy(z.Records[0]).(*dns.SOA)
	soa.Serial++
	z.Serial = soa.Serial
	z.Records = append([]dns.RR{soa}, z.Records[1:]...)
	return z
}

// swap publishes z and returns how long it took the server at addr to
// answer its serial: the swap as a client sees it.
func swap(ctx context.Context, live *dnszone.Live, z dnszone.Zone, addr string) (time.Duration, error) {
	q := new(dns.Msg)
	q.SetQuestion(z.Origin, dns.TypeSOA)
	cl := &dns.Client{Timeout: 100 * time.Millisecond}
	start := time.Now()
	live.Publish(&dnszone.Set{Zones: []dnszone.Zone{z}})
	for time.Since(start) < 10*time.Second && ctx.Err() == nil {
		r, _, err := cl.ExchangeContext(ctx, q, addr)
		if err == nil && len(r.Answer) == 1 {
			if soa, ok := r.Answer[0].(*dns.SOA); ok && soa.Serial == z.Serial {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("serial %d not served after 10 s", z.Serial)
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
