package mailauth

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the answer cache. Positive answers live for the smallest TTL
// of their records, negative ones (NXDOMAIN, NODATA) for the SOA minimum
// of RFC 2308 §5, or negativeDefaultTTL when the answer carries no SOA;
// both capped, so that a change at the source is seen within the cap.
const (
	DefaultCacheEntries = 10000
	maxPositiveTTL      = time.Hour
	maxNegativeTTL      = 15 * time.Minute
	negativeDefaultTTL  = 60 * time.Second
)

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

// cacheEntry is a positive answer (rrs, read only once stored) or a
// negative one (NotFound; nxdomain tells NXDOMAIN from NODATA).
type cacheEntry struct {
	rrs      []dns.RR
	nxdomain bool
	expires  time.Time
}

func newCacheEntry(rrs []dns.RR, err error, expires time.Time) cacheEntry {
	e := cacheEntry{rrs: rrs, expires: expires}
	var de *DNSError
	if errors.As(err, &de) {
		e.nxdomain = de.NXDomain
	}
	return e
}

// result is what query returns for e, the error naming name as asked.
func (e cacheEntry) result(name, tname string) ([]dns.RR, error) {
	if e.rrs == nil {
		return nil, &DNSError{Name: name, Type: tname, NotFound: true, NXDomain: e.nxdomain}
	}
	return e.rrs, nil
}

// answerCache is a bounded map of answers, safe for concurrent use. A
// question asked while the same one is on the wire waits for its answer
// (inflight) rather than asking again.
type answerCache struct {
	mu       sync.Mutex
	max      int
	entries  map[cacheKey]cacheEntry
	inflight map[cacheKey]*flight
}

// flight is a question on the wire; done is closed when its answer is in
// (entry, when ok: a failure is not shared, each waiter asks itself).
type flight struct {
	done  chan struct{}
	entry cacheEntry
	ok    bool
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, entries: make(map[cacheKey]cacheEntry), inflight: make(map[cacheKey]*flight)}
}

// begin returns the cached answer of k (hit), or the flight to wait for,
// or a new flight that the caller leads (leader) and must end with
// finish.
func (c *answerCache) begin(k cacheKey, now time.Time) (e cacheEntry, hit bool, f *flight, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		if now.Before(e.expires) {
			return e, true, nil, false
		}
		delete(c.entries, k)
	}
	if f := c.inflight[k]; f != nil {
		return cacheEntry{}, false, f, false
	}
	f = &flight{done: make(chan struct{})}
	c.inflight[k] = f
	return cacheEntry{}, false, f, true
}

// finish ends the flight f of k, storing e when ok (cacheable).
func (c *answerCache) finish(k cacheKey, f *flight, e cacheEntry, ok bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.putLocked(k, e, now)
	}
	delete(c.inflight, k)
	f.entry, f.ok = e, ok
	close(f.done)
}

func (c *answerCache) get(k cacheKey, now time.Time) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return cacheEntry{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, k)
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e. When the cache is full it drops the expired entries and,
// if that leaves it above 7/8 of its bound, arbitrary ones (Go's map
// order) down to 7/8: the O(n) sweep then comes at most once every n/8
// insertions, O(1) amortised.
func (c *answerCache) put(k cacheKey, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, e, now)
}

func (c *answerCache) putLocked(k cacheKey, e cacheEntry, now time.Time) {
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		keep := c.max - c.max/8
		if keep >= c.max {
			keep = c.max - 1
		}
		for k := range c.entries {
			if len(c.entries) <= keep {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[k] = e
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func cacheKeyFor(fqdn string, qtype uint16) cacheKey {
	return cacheKey{name: strings.ToLower(fqdn), qtype: qtype}
}

// positiveTTL is the smallest TTL of the answer section (the CNAME chain
// included), capped.
func positiveTTL(resp *dns.Msg) time.Duration {
	ttl := maxPositiveTTL
	for _, rr := range resp.Answer {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
	return ttl
}

// negativeTTL is the TTL of a negative answer (RFC 2308 §5): the smaller
// of the SOA record's TTL and its MINIMUM field, capped; without a SOA in
// the authority section, negativeDefaultTTL.
func negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(ttl, maxNegativeTTL)
		}
	}
	return negativeDefaultTTL
}
