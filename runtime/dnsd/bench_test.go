package dnsd

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// bigZone is a zone of n records: the SOA, and hosts with A records.
func bigZone(t testing.TB, n int) dnszone.Zone {
	t.Helper()
	soa, err := dns.NewRR(fmt.Sprintf("%s 3600 IN SOA ns1.%s hostmaster.%s %d 7200 3600 1209600 300", origin, origin, origin, serial))
	if err != nil {
		t.Fatal(err)
	}
	z := dnszone.Zone{Origin: origin, Serial: serial, Records: []dns.RR{soa}, Secondaries: []netip.Addr{wanClient}}
	for i := 1; i < n; i++ {
		z.Records = append(z.Records, &dns.A{
			Hdr: dns.RR_Header{Name: fmt.Sprintf("h%d.d%d.%s", i, i%100, origin), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 10800},
			A:   netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).AsSlice(),
		})
	}
	return z
}

// BenchmarkSwap10k: indexing a 10,000-record zone and swapping it in
// (target: under 50 ms).
func BenchmarkSwap10k(b *testing.B) {
	set := &dnszone.Set{Zones: []dnszone.Zone{bigZone(b, 10_000)}}
	s := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		s.swap(set)
	}
}

// BenchmarkAnswer: one query of a 10,000-record zone, from the raw
// packet to the packed answer, without the network.
func BenchmarkAnswer(b *testing.B) {
	live := &dnszone.Live{}
	live.Publish(&dnszone.Set{Zones: []dnszone.Zone{bigZone(b, 10_000)}})
	s := New(Config{Zones: live})
	m := new(dns.Msg)
	m.SetQuestion("h42.d42."+origin, dns.TypeA)
	m.SetEdns0(1232, false)
	raw, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	ix := s.ix.Load()
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := s.handle(b.Context(), ix, raw, wanClient, false, buf); out == nil {
			b.Fatal("no answer")
		}
	}
}
