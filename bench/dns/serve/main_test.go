package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/dnszone"
)

const zoneText = `$ORIGIN mf-bench.test.
$TTL 28800
@ NS ns1
NS1 10800 A 192.0.2.10
@ 3600 SOA ns1 hostmaster 2026120401 3600 900 1209600 3600
@ MX 10 mail
mail 10800 A 192.0.2.10
`

func TestLoadZone(t *testing.T) {
	for _, c := range []struct {
		name, text, err string
	}{
		{"zone", zoneText, ""},
		{"no SOA", "$ORIGIN mf-bench.test.\n@ 60 NS ns1\n", "no SOA"},
		{"two SOAs", zoneText + "@ 3600 SOA ns2 hostmaster 2 3600 900 1209600 3600\n", "one, at its origin"},
		{"SOA below the apex", "$ORIGIN mf-bench.test.\nsub 60 SOA ns1 h 1 2 3 4 5\n", "one, at its origin"},
		{"outside the zone", zoneText + "other.test. 60 A 192.0.2.1\n", "outside the zone"},
		{"bad record", zoneText + "mail 60 A 300.1.1.1\n", "read the zone file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			z, err := loadZone(strings.NewReader(c.text), "MF-bench.test", "test.zone")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if z.Origin != "mf-bench.test." || z.Serial != 2026120401 || len(z.Records) != 5 {
				t.Fatalf("zone %s serial %d with %d records", z.Origin, z.Serial, len(z.Records))
			}
			if _, ok := z.Records[0].(*dns.SOA); !ok {
				t.Errorf("first record %v, want the SOA", z.Records[0])
			}
			for _, rr := range z.Records {
				if n := rr.Header().Name; n != strings.ToLower(n) {
					t.Errorf("owner %q not in lower case", n)
				}
			}
		})
	}
}

// TestCheckZone: -check passes against a server that publishes the zone,
// and fails against one that lacks a record of it.
func TestCheckZone(t *testing.T) {
	z, err := loadZone(strings.NewReader(zoneText), "mf-bench.test.", "test.zone")
	if err != nil {
		t.Fatal(err)
	}
	full := dnstest.New(t)
	full.AddRR(z.Records...)
	if err := checkZone(t.Context(), full.Addr(), z); err != nil {
		t.Errorf("against the same zone: %v", err)
	}
	less := dnstest.New(t)
	less.AddRR(z.Records[:len(z.Records)-1]...)
	if err := checkZone(t.Context(), less.Addr(), z); err == nil || !strings.Contains(err.Error(), "1 of 5 record sets do not match") {
		t.Errorf("against the zone less a record: %v", err)
	}
}

// TestSwap: a swap publishes the zone with the next serial, and lasts
// until the server answers it.
func TestSwap(t *testing.T) {
	z, err := loadZone(strings.NewReader(zoneText), "mf-bench.test.", "test.zone")
	if err != nil {
		t.Fatal(err)
	}
	var live dnszone.Live
	live.Publish(&dnszone.Set{Zones: []dnszone.Zone{z}})
	// A server that answers the SOA of the Set being served, 50 ms late
	// after each change: a swap is no shorter.
	var mu sync.Mutex
	cur, _ := live.Load() // the Set answered
	var pending *dnszone.Set
	var seen time.Time
	srv := dnstest.New(t)
	srv.SetHandler(func(w dns.ResponseWriter, r *dns.Msg) {
		s, _ := live.Load()
		mu.Lock()
		if s != cur {
			if s != pending {
				pending, seen = s, time.Now()
			} else if time.Since(seen) >= 50*time.Millisecond {
				cur = s
			}
		}
		answer := cur
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = answer.Zones[0].Records[:1]
		w.WriteMsg(m)
	})

	next := bumpSerial(z)
	if next.Serial != z.Serial+1 || next.Records[0].(*dns.SOA).Serial != z.Serial+1 || z.Records[0].(*dns.SOA).Serial != z.Serial {
		t.Fatalf("bumpSerial: serial %d, SOA %v; the zone's SOA now %v", next.Serial, next.Records[0], z.Records[0])
	}
	if len(next.Records) != len(z.Records) {
		t.Fatalf("bumpSerial: %d records, want %d", len(next.Records), len(z.Records))
	}
	d, err := swap(t.Context(), &live, next, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := live.Load(); s.Zones[0].Serial != next.Serial {
		t.Errorf("published serial %d, want %d", s.Zones[0].Serial, next.Serial)
	}
	if d < 50*time.Millisecond || d > 10*time.Second {
		t.Errorf("swap took %s, want the 50 ms the server took to answer the new serial", d)
	}
}
