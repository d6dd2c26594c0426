package dnsd

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// index is one published dnszone.Set made ready for lookups. It is built
// whole before it is swapped in, and never changed after: queries read it
// without a lock.
type index struct {
	set   *dnszone.Set
	zones map[string]*zone // by origin
	lan   lanView
}

// zone is one zone's names and records.
type zone struct {
	origin string
	serial uint32
	// negSOA is the SOA of negative answers' authority section, its TTL
	// the negative TTL: min(SOA TTL, SOA minimum) (RFC 2308 3).
	negSOA dns.RR
	// names holds every owner name and every empty non-terminal (a name
	// with no records but names below it), so that a lookup tells a name
	// that exists from one that does not (RFC 8020) and finds a
	// wildcard's closest encloser (RFC 4592) by walking up.
	names map[string]*node
	// cuts is set when a name below the origin has NS records: a
	// delegation, answered with a referral.
	cuts bool
	// records are the zone's records as published, the SOA first: the
	// body of a transfer.
	records     []dns.RR
	secondaries []netip.Addr
}

// node is the records of one owner name, by type; none for an empty
// non-terminal.
type node struct {
	sets []rrset
}

type rrset struct {
	typ uint16
	rrs []dns.RR
}

// get returns the records of type t, or nil.
func (n *node) get(t uint16) []dns.RR {
	for i := range n.sets {
		if n.sets[i].typ == t {
			return n.sets[i].rrs
		}
	}
	return nil
}

// lanView is dnszone.LAN made ready for lookups.
type lanView struct {
	on     bool
	prefix netip.Prefix
	addr   netip.Addr
	names  map[string]bool
	setup  bool
}

// contains reports whether a client at a gets the LAN view.
func (l *lanView) contains(a netip.Addr) bool {
	return l.on && l.prefix.Contains(a)
}

// buildIndex indexes set. A zone that cannot be served (no SOA at its
// origin first) is left out and reported in skipped; records outside
// their zone are left out and reported too: the server keeps serving the
// rest rather than nothing.
func buildIndex(set *dnszone.Set) (ix *index, skipped []error) {
	ix = &index{set: set, zones: make(map[string]*zone, len(set.Zones))}
	for i := range set.Zones {
		z, errs := buildZone(&set.Zones[i])
		skipped = append(skipped, errs...)
		if z == nil {
			continue
		}
		if _, dup := ix.zones[z.origin]; dup {
			skipped = append(skipped, fmt.Errorf("zone %s: published twice, the first kept", z.origin))
			continue
		}
		ix.zones[z.origin] = z
	}
	l := set.LAN
	if l.Address.IsValid() {
		ix.lan = lanView{
			on:     true,
			prefix: l.Address,
			addr:   l.Address.Addr().Unmap(),
			names:  make(map[string]bool, len(l.Names)),
			setup:  l.Setup,
		}
		for _, n := range l.Names {
			ix.lan.names[dns.CanonicalName(n)] = true
		}
	}
	return ix, skipped
}

func buildZone(dz *dnszone.Zone) (*zone, []error) {
	origin := dns.CanonicalName(dz.Origin)
	if len(dz.Records) == 0 {
		return nil, []error{fmt.Errorf("zone %s: no records", origin)}
	}
	soa, ok := dz.Records[0].(*dns.SOA)
	if !ok || dns.CanonicalName(soa.Hdr.Name) != origin {
		return nil, []error{fmt.Errorf("zone %s: the first record is not the SOA of the origin", origin)}
	}
	neg := dns.Copy(soa).(*dns.SOA)
	neg.Hdr.Name = origin
	neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	z := &zone{
		origin:      origin,
		serial:      soa.Serial,
		negSOA:      neg,
		names:       make(map[string]*node, len(dz.Records)),
		records:     make([]dns.RR, 0, len(dz.Records)),
		secondaries: make([]netip.Addr, 0, len(dz.Secondaries)),
	}
	for _, a := range dz.Secondaries {
		z.secondaries = append(z.secondaries, a.Unmap())
	}
	var errs []error
	for i, rr := range dz.Records {
		h := rr.Header()
		owner := h.Name
		if !isLower(owner) || !dns.IsFqdn(owner) {
			// The reconciler publishes lower-case FQDNs; a record that is
			// not gets a copy rather than a change to the published Set.
			owner = dns.CanonicalName(owner)
			rr = dns.Copy(rr)
			rr.Header().Name = owner
		}
		if !dns.IsSubDomain(origin, owner) {
			errs = append(errs, fmt.Errorf("zone %s: record %s is outside the zone, left out", origin, owner))
			continue
		}
		if i > 0 && h.Rrtype == dns.TypeSOA {
			errs = append(errs, fmt.Errorf("zone %s: a second SOA at %s, left out", origin, owner))
			continue
		}
		z.records = append(z.records, rr)
		n := z.names[owner]
		if n == nil {
			n = &node{}
			z.names[owner] = n
		}
		n.add(h.Rrtype, rr)
		if h.Rrtype == dns.TypeNS && owner != origin {
			z.cuts = true
		}
	}
	// Empty non-terminals: every name between an owner and the origin
	// exists.
	for owner := range z.names {
		for name := parent(owner); len(name) > len(origin); name = parent(name) {
			if _, ok := z.names[name]; ok {
				break
			}
			z.names[name] = &node{}
		}
	}
	// A record may be appended to its set later: clip the sets so that an
	// answer built by appending to one never writes into the index.
	for _, n := range z.names {
		for i := range n.sets {
			n.sets[i].rrs = slices.Clip(n.sets[i].rrs)
		}
	}
	return z, errs
}

func (n *node) add(t uint16, rr dns.RR) {
	for i := range n.sets {
		if n.sets[i].typ == t {
			n.sets[i].rrs = append(n.sets[i].rrs, rr)
			return
		}
	}
	n.sets = append(n.sets, rrset{typ: t, rrs: []dns.RR{rr}})
}

// parent is name without its first label ("." has none: ".").
func parent(name string) string {
	if i, end := dns.NextLabel(name, 0); !end {
		return name[i:]
	}
	return "."
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// find returns the zone qname (lower case) is at or under, the deepest
// one when zones nest.
func (ix *index) find(qname string) *zone {
	if len(ix.zones) == 0 {
		return nil
	}
	for name := qname; ; name = parent(name) {
		if z := ix.zones[name]; z != nil {
			return z
		}
		if name == "." {
			return nil
		}
	}
}

// lower returns s in lower case, without allocating when it already is.
func lower(s string) string {
	if isLower(s) {
		return s
	}
	return strings.ToLower(s)
}
