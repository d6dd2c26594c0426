package dnsd

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// RRL is the response rate limiting of clients outside the LAN over UDP,
// against the use of the server as a reflector: a spoofed source gets at
// most Rate copies of one response a second (BIND's RRL, simplified).
// Responses are counted per client network (a /24 in IPv4, a /56 in
// IPv6) and per response: the same name, type and rcode (every
// NXDOMAIN of a zone as one, every REFUSED as one).
type RRL struct {
	// Rate is the responses a second of a network and response, with a
	// burst of one second's; 0 turns the limiting off.
	Rate int
	// Slip: over the limit, every Slip-th response is sent truncated
	// (TC=1, no records), so that a real client behind the network
	// retries over TCP, which a spoofed source cannot; the others are
	// dropped. 0 drops them all, 1 truncates them all.
	Slip int
	// Loopback limits loopback clients too: they are the box's own
	// programs (and benchmarks), left out otherwise.
	Loopback bool
	// MaxEntries bounds the responses tracked; 0: DefaultRRLEntries.
	MaxEntries int
}

// The limiting of a Config without RRL, and the bound of MaxEntries
// (about 10 MB).
const (
	DefaultRRLRate    = 20
	DefaultRRLSlip    = 2
	DefaultRRLEntries = 100_000
)

// What the limiter says of a response.
type verdict int

const (
	send verdict = iota
	drop
	slip
)

type rrlKey struct {
	net   netip.Prefix
	qtype uint16
	rcode int
	name  string
}

type bucket struct {
	tokens float64
	last   time.Time
	over   int // responses over the limit, for Slip
}

const rrlShards = 16

// limiter is RRL's state: token buckets in shards, each under its lock.
type limiter struct {
	cfg    RRL
	now    func() time.Time
	seed   maphash.Seed
	shards [rrlShards]struct {
		mu sync.Mutex
		m  map[rrlKey]*bucket
	}
}

func newLimiter(cfg RRL, now func() time.Time) *limiter {
	setDefault(&cfg.MaxEntries, DefaultRRLEntries)
	l := &limiter{cfg: cfg, now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = map[rrlKey]*bucket{}
	}
	return l
}

// applies reports whether responses to src are limited.
func (l *limiter) applies(src netip.Addr) bool {
	return l.cfg.Rate > 0 && (l.cfg.Loopback || !src.IsLoopback())
}

// check counts a response to src and says what to do with it.
func (l *limiter) check(src netip.Addr, qtype uint16, rcode int, name string) verdict {
	bits := 24
	if src.Is6() {
		bits = 56
	}
	p, _ := src.Prefix(bits)
	k := rrlKey{net: p, qtype: qtype, rcode: rcode, name: name}
	var h maphash.Hash
	h.SetSeed(l.seed)
	b := p.Addr().As16()
	h.Write(b[:])
	h.WriteString(name)
	sh := &l.shards[h.Sum64()%rrlShards]
	now := l.now()
	rate := float64(l.cfg.Rate)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk := sh.m[k]
	if bk == nil {
		if len(sh.m) >= l.cfg.MaxEntries/rrlShards {
			l.sweep(sh.m, now)
		}
		bk = &bucket{tokens: rate, last: now}
		sh.m[k] = bk
	}
	bk.tokens = min(rate, bk.tokens+now.Sub(bk.last).Seconds()*rate)
	bk.last = now
	if bk.tokens >= 1 {
		bk.tokens--
		return send
	}
	bk.over++
	if l.cfg.Slip > 0 && bk.over%l.cfg.Slip == 0 {
		return slip
	}
	return drop
}

// sweep forgets the buckets that are full again (nothing to remember);
// if every one is busy, it forgets them all rather than grow: the
// attacker's many networks then start from a full bucket, which a
// reflector's victim can bear.
func (l *limiter) sweep(m map[rrlKey]*bucket, now time.Time) {
	for k, b := range m {
		if now.Sub(b.last) >= time.Second {
			delete(m, k)
		}
	}
	if len(m) >= l.cfg.MaxEntries/rrlShards {
		clear(m)
	}
}
