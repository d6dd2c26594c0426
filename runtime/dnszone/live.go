package dnszone

import (
	"net/netip"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/live"
)

// Zone is one zone the box serves with authority.
type Zone struct {
	// Origin is the zone's apex, fully qualified and in lower case:
	// "ma-societe.fr.".
	Origin string
	// Serial is the SOA serial (YYYYMMDDnn), the same as in Records' SOA.
	Serial uint32
	// Records are every record of the zone, the SOA first; each owner name
	// is fully qualified, in lower case, at or under Origin.
	Records []dns.RR
	// Secondaries may transfer the zone (AXFR, IXFR) and are told of its
	// changes (NOTIFY, to port 53).
	Secondaries []netip.Addr
}

// LAN is what the box answers its LAN clients (router mode), besides its
// zones.
type LAN struct {
	// Address is the box's address on the LAN, with the LAN's prefix: a
	// query from inside the prefix gets the LAN view. Invalid: no LAN view
	// (server mode).
	Address netip.Prefix
	// Names are answered with the box's LAN address (split horizon):
	// "mailfountain.local.", "mail.<domain>." of each domain.
	Names []string
	// Setup is the first-boot setup mode: every name answers the box's
	// LAN address, so that any browser lands on the setup wizard.
	Setup bool
	// Upstreams are the resolvers the LAN's other queries are forwarded
	// to.
	Upstreams []netip.AddrPort
}

// Set is everything the DNS server serves at once. It is never changed
// once published.
type Set struct {
	Zones []Zone
	LAN   LAN
}

// Live is the Set being served, as the DNS reconciler last published it.
// The zero Live holds an empty Set.
type Live struct {
	v live.Value[Set]
}

// Publish makes s the Set being served; s must not be changed after.
func (l *Live) Publish(s *Set) { l.v.Publish(s) }

// Load returns the Set being served (never nil), and a channel closed
// when another is published.
func (l *Live) Load() (*Set, <-chan struct{}) {
	cur, changed := l.v.Load()
	if cur == nil {
		cur = &Set{}
	}
	return cur, changed
}
