package dnsd

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// Recursor answers the LAN clients' queries for names outside the box's
// zones and LAN names; runtime/dnsd/forward's Forwarder is one. q has RD
// set and one question; the answer's ID need not match.
type Recursor interface {
	Resolve(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

// Metrics hears what the server does, for the daemon's metrics;
// *metrics.Metrics is one. The calls come from the server's goroutines:
// they must be quick and safe for concurrent use.
type Metrics interface {
	// DNSQuery: a query was answered over transport (UDP, TCP) with
	// rcode ("noerror", "nxdomain", "refused"... as dns.RcodeToString,
	// lower case), or dropped ("dropped": not a query, or rate
	// limited).
	DNSQuery(transport, rcode string)
	// Refused: a TCP connection was refused by a limit; service is
	// "dns", reason connlimit's (connlimit.TooMany,
	// connlimit.TooManyFromIP). The same as the other servers'.
	Refused(service, reason string)
	// DNSRateLimited: response rate limiting dropped a response
	// ("dropped") or sent it truncated ("slipped").
	DNSRateLimited(action string)
	// DNSZoneSwap: a published Set was indexed and swapped in.
	DNSZoneSwap(took time.Duration)
	// DNSTransfer: a zone transfer was "allowed" or "refused".
	DNSTransfer(result string)
	// DNSNotify: a NOTIFY to a secondary was "acknowledged", or "failed"
	// after its retries.
	DNSNotify(result string)
}

// Results of Metrics' calls.
const (
	Dropped      = "dropped"
	Slipped      = "slipped"
	Allowed      = "allowed"
	Refused      = "refused"
	Acknowledged = "acknowledged"
	Failed       = "failed"
)

type noMetrics struct{}

func (noMetrics) DNSQuery(string, string)   {}
func (noMetrics) DNSRateLimited(string)     {}
func (noMetrics) Refused(string, string)    {}
func (noMetrics) DNSZoneSwap(time.Duration) {}
func (noMetrics) DNSTransfer(string)        {}
func (noMetrics) DNSNotify(string)          {}

// Defaults of Config's limits.
const (
	// DefaultUDPSize is the EDNS0 payload of the DNS flag day 2020: no
	// IP fragmentation on any usual path.
	DefaultUDPSize                = 1232
	DefaultNotifyPort             = 53
	DefaultNotifyTimeout          = 2 * time.Second
	DefaultNotifyAttempts         = 3
	DefaultRecursorTimeout        = 5 * time.Second
	DefaultMaxRecursions          = 256
	DefaultMaxTCPConnections      = 256
	DefaultMaxTCPConnectionsPerIP = 16
	DefaultTCPIdleTimeout         = 10 * time.Second
	DefaultTCPLifetime            = 2 * time.Minute
	DefaultTCPWriteTimeout        = 10 * time.Second
	DefaultMaxTCPQueries          = 100
)

// Config is what a Server needs. Zero values take the defaults above.
type Config struct {
	// Zones is what to serve; the server swaps each published Set in
	// whole. nil serves nothing (every query is refused, but the LAN's).
	Zones *dnszone.Live
	// Recursor answers LAN clients' queries outside the zones and the
	// LAN names; nil or failing: SERVFAIL. Others never reach it.
	Recursor Recursor
	Logger   *slog.Logger
	// Metrics, if not nil, hears of queries, rate limiting, zone swaps,
	// transfers and NOTIFY.
	Metrics Metrics
	// RRL is the response rate limiting of clients outside the LAN over
	// UDP; nil takes DefaultRRLRate and DefaultRRLSlip.
	RRL *RRL

	// UDPSize is the largest UDP response, the EDNS0 payload size the
	// server announces; at least 512.
	UDPSize int
	// NotifyPort is the secondaries' port for NOTIFY (tests use another).
	NotifyPort     uint16
	NotifyTimeout  time.Duration
	NotifyAttempts int
	// RecursorTimeout bounds one recursion.
	RecursorTimeout time.Duration
	// MaxRecursions bounds the recursions under way for UDP clients; the
	// queries beyond get SERVFAIL.
	MaxRecursions int
	// MaxTCPConnections and MaxTCPConnectionsPerIP bound the TCP
	// connections, loopback's included.
	MaxTCPConnections      int
	MaxTCPConnectionsPerIP int
	// TCPIdleTimeout bounds the wait for a query (the first included),
	// TCPLifetime a whole connection, TCPWriteTimeout one response (one
	// message of a transfer).
	TCPIdleTimeout  time.Duration
	TCPLifetime     time.Duration
	TCPWriteTimeout time.Duration
	// MaxTCPQueries is the number of queries of one connection; the
	// server closes it after.
	MaxTCPQueries int
}

// Server is the DNS server. One Server may serve several UDP and TCP
// listeners at once; they share the index and the limits.
type Server struct {
	cfg Config
	log *slog.Logger
	met Metrics
	// ix is the index being served; swapped whole.
	ix       atomic.Pointer[index]
	rrl      *limiter
	tcpConns *connlimit.Limiter
	// recursions holds a token per recursion under way for UDP clients.
	recursions chan struct{}
	bufs       sync.Pool // *[]byte of MaxMsgSize
}

// New returns a server of cfg; it serves the Set published at once, and
// follows the next ones while Run runs.
func New(cfg Config) *Server {
	if cfg.Zones == nil {
		cfg.Zones = &dnszone.Live{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.RRL == nil {
		cfg.RRL = &RRL{Rate: DefaultRRLRate, Slip: DefaultRRLSlip}
	}
	setDefault(&cfg.UDPSize, DefaultUDPSize)
	cfg.UDPSize = min(max(cfg.UDPSize, dns.MinMsgSize), dns.MaxMsgSize)
	setDefault(&cfg.NotifyPort, DefaultNotifyPort)
	setDefault(&cfg.NotifyTimeout, DefaultNotifyTimeout)
	setDefault(&cfg.NotifyAttempts, DefaultNotifyAttempts)
	setDefault(&cfg.RecursorTimeout, DefaultRecursorTimeout)
	setDefault(&cfg.MaxRecursions, DefaultMaxRecursions)
	setDefault(&cfg.MaxTCPConnections, DefaultMaxTCPConnections)
	setDefault(&cfg.MaxTCPConnectionsPerIP, DefaultMaxTCPConnectionsPerIP)
	setDefault(&cfg.TCPIdleTimeout, DefaultTCPIdleTimeout)
	setDefault(&cfg.TCPLifetime, DefaultTCPLifetime)
	setDefault(&cfg.TCPWriteTimeout, DefaultTCPWriteTimeout)
	setDefault(&cfg.MaxTCPQueries, DefaultMaxTCPQueries)
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		met:        cfg.Metrics,
		rrl:        newLimiter(*cfg.RRL, time.Now),
		tcpConns:   connlimit.New(cfg.MaxTCPConnections, cfg.MaxTCPConnectionsPerIP),
		recursions: make(chan struct{}, cfg.MaxRecursions),
	}
	s.bufs.New = func() any { b := make([]byte, dns.MaxMsgSize); return &b }
	set, _ := cfg.Zones.Load()
	s.swap(set)
	return s
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// swap indexes set and serves it; it returns the index served before.
func (s *Server) swap(set *dnszone.Set) (old *index) {
	start := time.Now()
	ix, skipped := buildIndex(set)
	old = s.ix.Swap(ix)
	took := time.Since(start)
	for _, err := range skipped {
		s.log.Warn("zone not served whole", "err", err)
	}
	s.met.DNSZoneSwap(took)
	s.log.Info("zones swapped in", "zones", len(ix.zones), "took", took)
	return old
}

// Run follows Config.Zones until ctx is done: each published Set is
// indexed and swapped in whole, and the secondaries of each zone whose
// serial changed (every zone, the first time) are sent a NOTIFY (RFC
// 1996). It returns when ctx is done and the NOTIFYs under way have
// stopped.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var prev *index // what the secondaries were told of
	for {
		set, changed := s.cfg.Zones.Load()
		cur := s.ix.Load()
		if cur.set != set {
			s.swap(set)
			cur = s.ix.Load()
		}
		s.notifyChanged(ctx, &wg, prev, cur)
		prev = cur
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// notifyChanged sends NOTIFY to the secondaries of each zone of cur whose
// serial is not that of prev.
func (s *Server) notifyChanged(ctx context.Context, wg *sync.WaitGroup, prev, cur *index) {
	for origin, z := range cur.zones {
		if prev != nil {
			if p := prev.zones[origin]; p != nil && p.serial == z.serial {
				continue
			}
		}
		for _, a := range z.secondaries {
			to := netip.AddrPortFrom(a, s.cfg.NotifyPort)
			wg.Go(func() { s.notify(ctx, z, to) })
		}
	}
}

// notify tells the secondary at to that z changed, and retries until it
// answers (RFC 1996 3.6) or NotifyAttempts are spent.
func (s *Server) notify(ctx context.Context, z *zone, to netip.AddrPort) {
	m := new(dns.Msg)
	m.SetNotify(z.origin)
	m.Authoritative = true
	m.Answer = []dns.RR{z.records[0]}
	c := &dns.Client{Net: "udp", Timeout: s.cfg.NotifyTimeout}
	var err error
	for attempt := range s.cfg.NotifyAttempts {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * time.Second):
			case <-ctx.Done():
				return
			}
		}
		var resp *dns.Msg
		resp, _, err = c.ExchangeContext(ctx, m, to.String())
		if err == nil && (resp.Opcode != dns.OpcodeNotify || resp.Rcode != dns.RcodeSuccess) {
			err = fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
		}
		if err == nil {
			s.met.DNSNotify(Acknowledged)
			s.log.Info("NOTIFY acknowledged", "zone", z.origin, "serial", z.serial, "secondary", to)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
	s.met.DNSNotify(Failed)
	s.log.Warn("NOTIFY failed", "zone", z.origin, "serial", z.serial, "secondary", to, "err", err)
}
