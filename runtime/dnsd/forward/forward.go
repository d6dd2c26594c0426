package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Config.
const (
	// DefaultQueryTimeout bounds one exchange with one upstream (the
	// UDP query, and the TCP one after a truncated answer).
	DefaultQueryTimeout = 1500 * time.Millisecond
	// DefaultTimeout bounds a whole Resolve whose context has no
	// deadline: stub resolvers give up after about 5 s.
	DefaultTimeout = 4 * time.Second
)

// udpSize is the EDNS UDP size the forwarder advertises, upstream and to
// its clients (DNS flag day 2020: no IP fragmentation).
const udpSize = 1232

// rounds is how many times each upstream may be asked in one Resolve: a
// lost datagram must not make a failure when time is left.
const rounds = 2

// Metrics hears what the forwarder does, for the daemon's metrics;
// *metrics.Metrics is one. The calls come from the callers of Resolve:
// they must be quick and safe for concurrent use.
type Metrics interface {
	// ForwardCache: a query was answered from the cache (CacheHit), by
	// an exchange it led (CacheMiss), or by one another query led
	// (CacheShared).
	ForwardCache(result string)
	// ForwardExchange: one exchange with an upstream ended, with one of
	// the Exchange results, after took.
	ForwardExchange(result string, took time.Duration)
	// ForwardDiscarded: a datagram that did not answer the query sent
	// (another ID or question, not a response) was discarded.
	ForwardDiscarded()
}

// Results for Metrics.ForwardCache.
const (
	CacheHit    = "hit"
	CacheMiss   = "miss"
	CacheShared = "shared"
)

// Results for Metrics.ForwardExchange.
const (
	ExchangeOK       = "ok"       // an answer used (NOERROR, NXDOMAIN...)
	ExchangeServfail = "servfail" // SERVFAIL: the next upstream is asked
	ExchangeRefused  = "refused"  // REFUSED: the next upstream is asked
	ExchangeTimeout  = "timeout"  // no answer in time
	ExchangeError    = "error"    // a network error, or FORMERR, NOTIMP, an extended RCODE
)

type noMetrics struct{}

func (noMetrics) ForwardCache(string)                   {}
func (noMetrics) ForwardExchange(string, time.Duration) {}
func (noMetrics) ForwardDiscarded()                     {}

// Config is what New needs. Only Upstreams is required.
type Config struct {
	// Upstreams returns the resolvers to forward to, in order; it is
	// called for every exchange, so that a change (a new DHCP lease)
	// applies at once. It must be quick and safe for concurrent use.
	Upstreams func() []netip.AddrPort
	// MaxEntries bounds the cache; 0 means DefaultMaxEntries, < 0 no
	// cache.
	MaxEntries int
	// QueryTimeout bounds one exchange with one upstream; 0 means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// Timeout bounds a Resolve whose context has no deadline; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Logger, if not nil, hears of failed exchanges and discarded
	// datagrams (at debug level: they come from the network).
	Logger *slog.Logger
	// Metrics, if not nil, hears of cache hits, exchanges and discarded
	// datagrams.
	Metrics Metrics
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

// Forwarder forwards queries to the upstream resolvers and caches their
// answers. It serves any number of concurrent callers.
type Forwarder struct {
	cfg   Config
	log   *slog.Logger
	cache *cache
}

// New returns a forwarder for cfg.
func New(cfg Config) *Forwarder {
	if cfg.Upstreams == nil {
		cfg.Upstreams = func() []netip.AddrPort { return nil }
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Forwarder{cfg: cfg, log: cfg.Logger, cache: newCache(cfg.MaxEntries)}
}

// ErrNoUpstream is matched (errors.Is) by the error of a Resolve when no
// upstream resolver is known.
var ErrNoUpstream = errors.New("no upstream resolver")

// Resolve answers q: from the cache, or else from the upstreams. It
// returns a reply of its own (see the package documentation), or an error
// when no upstream answered in time, for the caller to answer SERVFAIL.
func (f *Forwarder) Resolve(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if r := refuse(q); r != nil {
		return r, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.Timeout)
		defer cancel()
	}
	qu := q.Question[0]
	opt := q.IsEdns0()
	k := key{
		name: strings.ToLower(qu.Name), qtype: qu.Qtype, qclass: qu.Qclass,
		do: opt != nil && opt.Do(), cd: q.CheckingDisabled, rd: q.RecursionDesired,
	}
	for {
		e, fl, leader := f.cache.begin(k, f.cfg.Now())
		switch {
		case e != nil:
			f.cfg.Metrics.ForwardCache(CacheHit)
			return reply(q, e.msg, f.cfg.Now().Sub(e.received)), nil
		case !leader:
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("forward %s %s: %w", qu.Name, dns.TypeToString[qu.Qtype], ctx.Err())
			}
			if fl.abandoned {
				continue // its leader gave up, not the upstreams: ask again
			}
			f.cfg.Metrics.ForwardCache(CacheShared)
			if fl.err != nil {
				return nil, fl.err
			}
			return reply(q, fl.msg, f.cfg.Now().Sub(fl.received)), nil
		}
		f.cfg.Metrics.ForwardCache(CacheMiss)
		resp, err := f.forward(ctx, k.do, q)
		now := f.cfg.Now()
		var ttl time.Duration
		if err == nil {
			ttl = cacheTTL(resp)
		}
		f.cache.finish(k, fl, resp, now, err, err != nil && ended(ctx), ttl)
		if err != nil {
			return nil, err
		}
		return reply(q, resp, 0), nil
	}
}

// ended reports whether ctx is done or past its deadline: a socket's
// deadline, or a dialer's, may fire before ctx's own timer marks it done,
// and a leader that failed by its own deadline must not pass that failure
// on to its waiters.
func ended(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(dl)
}

// refuse returns the answer to a query the forwarder does not forward, or
// nil.
func refuse(q *dns.Msg) *dns.Msg {
	r := new(dns.Msg)
	switch {
	case q == nil:
		return r.SetRcodeFormatError(new(dns.Msg))
	case q.Response || len(q.Question) != 1:
		return r.SetRcodeFormatError(q)
	case q.Opcode != dns.OpcodeQuery:
		return r.SetRcode(q, dns.RcodeNotImplemented)
	}
	switch q.Question[0].Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// Zone transfers go over TCP to the zone's servers, never
		// through a forwarder.
		return r.SetRcode(q, dns.RcodeRefused)
	}
	return nil
}

// reply makes the client's reply to q from the upstream answer resp
// (shared: never written), which age ago came in.
func reply(q, resp *dns.Msg, age time.Duration) *dns.Msg {
	r := resp.Copy()
	r.Id = q.Id
	r.Question = []dns.Question{q.Question[0]}
	r.Response = true
	r.Opcode = q.Opcode
	r.RecursionDesired = q.RecursionDesired
	r.CheckingDisabled = q.CheckingDisabled
	r.Authoritative = false
	r.Truncated = false
	// Names compressed: more answers fit in the client's UDP size.
	r.Compress = true
	opt := q.IsEdns0()
	do := opt != nil && opt.Do()
	if !do && !q.AuthenticatedData {
		r.AuthenticatedData = false
	}
	dec := uint32(max(age/time.Second, 0))
	extra := r.Extra[:0]
	for _, rr := range r.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	r.Extra = extra
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Ttl -= min(h.Ttl, dec)
		}
	}
	if opt != nil {
		r.SetEdns0(udpSize, do)
	}
	return r
}
