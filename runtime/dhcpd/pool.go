package dhcpd

import (
	"net/netip"
	"slices"
	"time"
)

// Lease is an address bound, or once bound, to a device. An expired
// lease is kept as the memory of the device's address: the device gets
// it again, and the address goes to another device only when no address
// was never leased (expired leases are reused last, the oldest first).
type Lease struct {
	// MAC is the device's hardware address (net.HardwareAddr.String());
	// "" for an address a client declined (found in use, RFC 2131
	// 4.3.3): held until Expiry, handed to no one.
	MAC      string     `json:"mac"`
	Addr     netip.Addr `json:"address"`
	Expiry   time.Time  `json:"expiry"`
	Hostname string     `json:"hostname,omitempty"`
}

// Active says whether l holds its address at now.
func (l *Lease) Active(now time.Time) bool { return now.Before(l.Expiry) }

// The pool's timings.
const (
	// offerHold is how long an offered address waits for the client's
	// REQUEST before another client may get it first.
	offerHold = 30 * time.Second
	// declineHold is how long an address a client declined is not handed
	// out: someone uses it without a lease.
	declineHold = 10 * time.Minute
)

// offer is an address offered to a device, until a time.
type offer struct {
	mac   string
	until time.Time
}

// pool allocates the addresses of a Config. It holds at most one lease
// and one offer per address of the LAN, so its memory is bounded
// whatever the clients send. It is not safe for concurrent use.
type pool struct {
	cfg    *Config
	byAddr map[netip.Addr]*Lease
	byMAC  map[string]*Lease
	offers map[netip.Addr]offer
	// reserved are the reservations by MAC and by address.
	reservedMAC  map[string]Reservation
	reservedAddr map[netip.Addr]string
}

func newPool() *pool {
	return &pool{byAddr: map[netip.Addr]*Lease{}, byMAC: map[string]*Lease{}, offers: map[netip.Addr]offer{}}
}

// setConfig makes the pool allocate cfg's addresses. Leases of
// addresses outside the LAN are dropped; those outside the range stay
// until they expire (their renewals are refused).
func (p *pool) setConfig(cfg *Config, now time.Time) {
	p.cfg = cfg
	p.reservedMAC = map[string]Reservation{}
	p.reservedAddr = map[netip.Addr]string{}
	for _, r := range cfg.Reservations {
		p.reservedMAC[r.MAC.String()] = r
		p.reservedAddr[r.Addr] = r.MAC.String()
	}
	for a, l := range p.byAddr {
		if !cfg.Server.Contains(a) || !p.usable(a) && !l.Active(now) {
			p.drop(l)
		}
	}
	clear(p.offers)
}

// load adds leases read back (a restart), dropping those the Config
// cannot have.
func (p *pool) load(ls []Lease, now time.Time) {
	for _, l := range ls {
		if !l.Addr.Is4() || p.byAddr[l.Addr] != nil || l.MAC != "" && p.byMAC[l.MAC] != nil {
			continue
		}
		p.put(&Lease{MAC: l.MAC, Addr: l.Addr, Expiry: l.Expiry, Hostname: l.Hostname})
	}
	if p.cfg != nil {
		p.setConfig(p.cfg, now)
	}
}

func (p *pool) put(l *Lease) {
	p.byAddr[l.Addr] = l
	if l.MAC != "" {
		p.byMAC[l.MAC] = l
	}
}

func (p *pool) drop(l *Lease) {
	if p.byAddr[l.Addr] == l {
		delete(p.byAddr, l.Addr)
	}
	if l.MAC != "" && p.byMAC[l.MAC] == l {
		delete(p.byMAC, l.MAC)
	}
}

// inRange says whether a is an address of the dynamic range.
func (p *pool) inRange(a netip.Addr) bool {
	return !a.Less(p.cfg.Start) && !p.cfg.End.Less(a) && a != p.cfg.Server.Addr()
}

// usable says whether a can be handed out by someone: in the range, or
// reserved.
func (p *pool) usable(a netip.Addr) bool {
	_, reserved := p.reservedAddr[a]
	return reserved || p.inRange(a)
}

// allowed says whether mac may hold a at now: a is its reservation, or a
// dynamic address not reserved, not held by another device, and mac has
// no reservation of its own.
func (p *pool) allowed(mac string, a netip.Addr, now time.Time) bool {
	if r, ok := p.reservedMAC[mac]; ok {
		return r.Addr == a
	}
	if _, ok := p.reservedAddr[a]; ok || !p.inRange(a) {
		return false
	}
	l := p.byAddr[a]
	return l == nil || l.MAC == mac || !l.Active(now)
}

// offered says whether a is offered to another device than mac at now.
func (p *pool) offered(mac string, a netip.Addr, now time.Time) bool {
	o, ok := p.offers[a]
	return ok && o.mac != mac && now.Before(o.until)
}

// offer chooses the address to offer mac (RFC 2131 4.3.1): its
// reservation; else its current or previous address; else the address
// it asks for (requested, may be invalid) when free; else the first
// address never leased; else the lease expired the longest ago; else, so
// that a flood of DISCOVERs cannot hold the whole range, an address
// offered to another device the longest ago. False: the range is
// exhausted.
func (p *pool) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	a, ok := p.choose(mac, requested, now)
	if !ok {
		return netip.Addr{}, false
	}
	for x, o := range p.offers {
		if o.mac == mac || !now.Before(o.until) {
			delete(p.offers, x)
		}
	}
	p.offers[a] = offer{mac: mac, until: now.Add(offerHold)}
	return a, true
}

func (p *pool) choose(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := p.reservedMAC[mac]; ok {
		return r.Addr, true
	}
	if l := p.byMAC[mac]; l != nil && p.allowed(mac, l.Addr, now) {
		return l.Addr, true
	}
	if requested.Is4() && p.allowed(mac, requested, now) && !p.offered(mac, requested, now) {
		if l := p.byAddr[requested]; l == nil || l.MAC == mac {
			return requested, true
		}
	}
	var oldest *Lease
	var oldestOffer netip.Addr
	for a := p.cfg.Start; !p.cfg.End.Less(a); a = a.Next() {
		if !p.allowed(mac, a, now) {
			continue
		}
		if p.offered(mac, a, now) {
			if !oldestOffer.IsValid() || p.offers[a].until.Before(p.offers[oldestOffer].until) {
				oldestOffer = a
			}
			continue
		}
		l := p.byAddr[a]
		if l == nil {
			return a, true
		}
		if oldest == nil || l.Expiry.Before(oldest.Expiry) {
			oldest = l
		}
	}
	if oldest != nil {
		return oldest.Addr, true
	}
	if oldestOffer.IsValid() {
		return oldestOffer, true
	}
	return netip.Addr{}, false
}

// bind leases a to mac until now plus the lease time (a REQUEST
// acknowledged), and returns the lease; false when mac may not have a
// (the server then NAKs).
func (p *pool) bind(mac string, a netip.Addr, hostname string, now time.Time) (Lease, bool) {
	if !p.allowed(mac, a, now) {
		return Lease{}, false
	}
	if l := p.byMAC[mac]; l != nil && l.Addr != a {
		p.drop(l)
	}
	if l := p.byAddr[a]; l != nil && l.MAC != mac {
		p.drop(l)
	}
	l := p.byAddr[a]
	if l == nil {
		l = &Lease{MAC: mac, Addr: a}
		p.put(l)
	}
	l.Expiry = now.Add(p.cfg.LeaseTime)
	if hostname != "" {
		l.Hostname = hostname
	}
	if o, ok := p.offers[a]; ok && o.mac == mac {
		delete(p.offers, a)
	}
	return *l, true
}

// release ends mac's lease of a (RELEASE): the address is free, and
// still the device's next time unless another takes it.
func (p *pool) release(mac string, a netip.Addr, now time.Time) bool {
	l := p.byMAC[mac]
	if l == nil || l.Addr != a || !l.Active(now) {
		return false
	}
	l.Expiry = now
	return true
}

// decline marks a as in use by someone without a lease (DECLINE of
// mac's offer or lease): no one gets it for declineHold.
func (p *pool) decline(mac string, a netip.Addr, now time.Time) bool {
	l := p.byAddr[a]
	o, offered := p.offers[a]
	if !(l != nil && l.MAC == mac || offered && o.mac == mac) {
		return false
	}
	if l != nil {
		p.drop(l)
	}
	delete(p.offers, a)
	p.put(&Lease{Addr: a, Expiry: now.Add(declineHold)})
	return true
}

// leases lists the leases by address.
func (p *pool) leases() []Lease {
	out := make([]Lease, 0, len(p.byAddr))
	for _, l := range p.byAddr {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return out
}

// counts are the leases active and the dynamic addresses free at now.
func (p *pool) counts(now time.Time) (active, free int) {
	for _, l := range p.byAddr {
		if l.MAC != "" && l.Active(now) {
			active++
		}
	}
	if p.cfg == nil {
		return active, 0
	}
	for a := p.cfg.Start; !p.cfg.End.Less(a); a = a.Next() {
		if _, r := p.reservedAddr[a]; r || !p.inRange(a) {
			continue
		}
		if l := p.byAddr[a]; l == nil || !l.Active(now) {
			free++
		}
	}
	return active, free
}

// forgetOffer drops the offer made to mac: it chose another server.
func (p *pool) forgetOffer(mac string) {
	for a, o := range p.offers {
		if o.mac == mac {
			delete(p.offers, a)
		}
	}
}
