package forward

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the cache (see the package documentation).
const (
	DefaultMaxEntries = 10000
	maxPositiveTTL    = time.Hour
	maxNegativeTTL    = 15 * time.Minute
)

// key is what makes two queries the same question to the cache: the
// flags change what an upstream answers.
type key struct {
	name       string // lower case
	qtype      uint16
	qclass     uint16
	do, cd, rd bool
}

// entry is a cached answer. msg is never written once stored: every reply
// is a copy.
type entry struct {
	key      key
	msg      *dns.Msg
	received time.Time
	expires  time.Time
}

// flight is a question on the wire; done is closed when its result (msg
// or err, and when it came) is in. abandoned means the leader's own
// context ended: its waiters ask again rather than share its failure.
type flight struct {
	done      chan struct{}
	msg       *dns.Msg
	received  time.Time
	err       error
	abandoned bool
}

// cache is a bounded LRU map of answers plus the questions on the wire,
// safe for concurrent use. max < 0 keeps nothing (flights are still
// shared).
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[key]*list.Element // of *entry
	lru     list.List             // front: most recently used
	flights map[key]*flight
}

func newCache(max int) *cache {
	c := &cache{max: max, entries: make(map[key]*list.Element), flights: make(map[key]*flight)}
	c.lru.Init()
	return c
}

// begin returns the cached answer of k (e not nil), or else the flight to
// wait for, or else a new flight that the caller leads (leader) and must
// end with finish.
func (c *cache) begin(k key, now time.Time) (e *entry, f *flight, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		e := el.Value.(*entry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			return e, nil, false
		}
		c.removeLocked(el)
	}
	if f := c.flights[k]; f != nil {
		return nil, f, false
	}
	f = &flight{done: make(chan struct{})}
	c.flights[k] = f
	return nil, f, true
}

// finish ends the flight f of k with its result, and stores msg for ttl
// when ttl > 0.
func (c *cache) finish(k key, f *flight, msg *dns.Msg, received time.Time, err error, abandoned bool, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && ttl > 0 && c.max > 0 {
		c.putLocked(&entry{key: k, msg: msg, received: received, expires: received.Add(ttl)})
	}
	delete(c.flights, k)
	f.msg, f.received, f.err, f.abandoned = msg, received, err, abandoned
	close(f.done)
}

func (c *cache) putLocked(e *entry) {
	if el, ok := c.entries[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	for len(c.entries) >= c.max {
		c.removeLocked(c.lru.Back())
	}
	c.entries[e.key] = c.lru.PushFront(e)
}

func (c *cache) removeLocked(el *list.Element) {
	delete(c.entries, el.Value.(*entry).key)
	c.lru.Remove(el)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheTTL is how long the answer resp may be kept (see the package
// documentation); 0: not at all.
func cacheTTL(resp *dns.Msg) time.Duration {
	if resp.Truncated {
		return 0
	}
	ttl := maxPositiveTTL
	for _, rr := range resp.Answer {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
	negative := resp.Rcode == dns.RcodeNameError || resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0
	switch {
	case negative:
		soa := authoritySOA(resp)
		if soa == nil {
			return 0 // RFC 2308 §5: no SOA, no negative caching
		}
		ttl = min(ttl, maxNegativeTTL, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second)
	case resp.Rcode != dns.RcodeSuccess:
		return 0
	}
	return max(ttl, 0)
}

// authoritySOA is the SOA record of resp's authority section, or nil.
func authoritySOA(resp *dns.Msg) *dns.SOA {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}
