package mailauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultQueryTimeout bounds one DNS exchange with one server when
// NewResolver is given no timeout.
const DefaultQueryTimeout = 3 * time.Second

// ErrNotFound is matched (errors.Is) by lookup errors that mean the name
// does not exist (NXDOMAIN) or has no record of the asked type (NODATA):
// the "void lookups" of RFC 7208 §4.6.4. Every other lookup error is
// temporary (SERVFAIL, REFUSED, timeout, network trouble).
var ErrNotFound = errors.New("no such record")

// DNSError is the error of every failed lookup. It implements net.Error so
// that go-msgauth tells temporary failures from missing records.
type DNSError struct {
	Name     string // the name asked
	Type     string // "TXT", "A", ...
	NotFound bool   // NXDOMAIN or NODATA; otherwise the failure is temporary
	// NXDomain: the name does not exist at all (NXDOMAIN, or a name that
	// cannot be asked); NotFound without NXDomain is NODATA. Mail
	// delivery tells them apart: NODATA for MX means the implicit MX.
	NXDomain bool
	Err      error // the cause of a temporary failure
}

func (e *DNSError) Error() string {
	if e.NotFound {
		return fmt.Sprintf("lookup %s %s: no such record", e.Type, e.Name)
	}
	return fmt.Sprintf("lookup %s %s: %v", e.Type, e.Name, e.Err)
}

// Unwrap returns the cause of a temporary failure.
func (e *DNSError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for void lookups.
func (e *DNSError) Is(target error) bool { return target == ErrNotFound && e.NotFound }

// Timeout reports whether the failure was a timeout.
func (e *DNSError) Timeout() bool {
	var ne net.Error
	return !e.NotFound && (errors.As(e.Err, &ne) && ne.Timeout() || errors.Is(e.Err, context.DeadlineExceeded))
}

// Temporary reports whether the lookup may succeed later.
func (e *DNSError) Temporary() bool { return !e.NotFound }

var _ net.Error = (*DNSError)(nil)

// Resolver sends DNS queries with miekg/dns to recursive servers, and
// keeps their answers in a bounded cache (DefaultCacheEntries entries) by
// name and type: positive answers for the smallest TTL of their records
// (at most an hour), NXDOMAIN and NODATA for the SOA minimum of RFC 2308
// (60 s without a SOA, at most 15 minutes); failures are not kept.
// Callers asking a question already on the wire wait for its answer.
// Every method returns slices of its own. It serves any number of
// concurrent callers.
type Resolver struct {
	servers []string
	timeout time.Duration
	cache   *answerCache

	// Now is the clock of the cache; nil means time.Now. Set it before
	// the first lookup.
	Now func() time.Time
}

// NewResolver returns a resolver asking servers ("ip:port", tried in
// order, twice over). nil servers means the nameservers of
// /etc/resolv.conf, or 127.0.0.1:53 when it lists none. timeout bounds one
// exchange with one server (0 means DefaultQueryTimeout); callers bound
// the whole by ctx.
func NewResolver(servers []string, timeout time.Duration) *Resolver {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	if len(servers) == 0 {
		servers = systemServers("/etc/resolv.conf")
	}
	return &Resolver{servers: append([]string(nil), servers...), timeout: timeout, cache: newAnswerCache(DefaultCacheEntries)}
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func systemServers(path string) []string {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cfg.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	port := cfg.Port
	if port == "" {
		port = "53"
	}
	out := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, port))
	}
	return out
}

// LookupTXT returns the TXT records of name, the strings of each record
// joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(unescapeTXT(s))
		}
		out = append(out, b.String())
	}
	return out, nil
}

// LookupIP returns the addresses of name: network "ip4" asks A, "ip6"
// asks AAAA.
func (r *Resolver) LookupIP(ctx context.Context, network, name string) ([]netip.Addr, error) {
	qtype := dns.TypeA
	if network == "ip6" {
		qtype = dns.TypeAAAA
	}
	rrs, err := r.query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			if qtype == dns.TypeA {
				a = a.Unmap()
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// LookupAddrs returns the addresses of host, IPv4 (A) first, then IPv6
// (AAAA); an address literal is its own. No address at all is an error
// matching ErrNotFound when neither lookup failed otherwise.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	v4, err4 := r.LookupIP(ctx, "ip4", host)
	v6, err6 := r.LookupIP(ctx, "ip6", host)
	if out := append(v4, v6...); len(out) > 0 {
		return out, nil
	}
	for _, err := range []error{err4, err6} {
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("address lookup failed: %w", err)
		}
	}
	return nil, fmt.Errorf("no address (A, AAAA): %w", ErrNotFound)
}

// LookupMX returns the exchanges of name's MX records, most preferred
// first, without the trailing dot.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*dns.MX, 0, len(rrs))
	for _, rr := range rrs {
		mxs = append(mxs, rr.(*dns.MX))
	}
	// Few records: an insertion sort keeps equal preferences in order.
	for i := 1; i < len(mxs); i++ {
		for j := i; j > 0 && mxs[j].Preference < mxs[j-1].Preference; j-- {
			mxs[j], mxs[j-1] = mxs[j-1], mxs[j]
		}
	}
	out := make([]string, 0, len(mxs))
	for _, mx := range mxs {
		out = append(out, strings.TrimSuffix(mx.Mx, "."))
	}
	return out, nil
}

// MX is one MX record.
type MX struct {
	Host string // the exchange without the trailing dot; "" for RFC 7505's null MX "."
	Pref uint16
}

// LookupMXRecords returns name's MX records sorted by preference (equal
// preferences in the order of the answer), for mail delivery, which must
// tell apart what LookupMX folds together: a null MX (RFC 7505) is a
// record with Host ""; a name without MX records (NODATA: the implicit MX
// applies, RFC 5321 §5.1) gives an error matching ErrNotFound whose
// DNSError has NXDomain false; a name that does not exist gives one with
// NXDomain true.
func (r *Resolver) LookupMXRecords(ctx context.Context, name string) ([]MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, MX{Host: strings.TrimSuffix(mx.Mx, "."), Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
	return out, nil
}

// IsNXDomain reports whether err is the error of a lookup of a name that
// does not exist (NXDOMAIN), as opposed to NODATA or a temporary failure.
func IsNXDomain(err error) bool {
	var de *DNSError
	return errors.As(err, &de) && de.NXDomain
}

// LookupPTR returns the names of addr's PTR records, without the trailing
// dot.
func (r *Resolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return nil, &DNSError{Name: addr.String(), Type: "PTR", Err: err}
	}
	rrs, err := r.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.TrimSuffix(rr.(*dns.PTR).Ptr, "."))
	}
	return out, nil
}

// queryAttempts is how many times each server is asked before a lookup
// fails: a lost UDP datagram must not make a temperror (resolv.conf's
// "attempts", default 2).
const queryAttempts = 2

// query returns the answer records of qtype for name, from the cache or
// else from the servers. The records are shared with the cache: callers
// read them and copy what they return.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	tname := dns.TypeToString[qtype]
	fqdn := dns.Fqdn(name)
	if !validQueryName(fqdn) {
		// A name that cannot go on the wire exists nowhere.
		return nil, &DNSError{Name: name, Type: tname, NotFound: true, NXDomain: true}
	}
	if r.cache == nil {
		rrs, _, err := r.ask(ctx, name, fqdn, qtype)
		return rrs, err
	}
	key := cacheKeyFor(fqdn, qtype)
	e, hit, f, leader := r.cache.begin(key, r.now())
	switch {
	case hit:
		return e.result(name, tname)
	case !leader:
		select {
		case <-f.done:
			if f.ok {
				return f.entry.result(name, tname)
			}
		case <-ctx.Done():
			return nil, &DNSError{Name: name, Type: tname, Err: ctx.Err()}
		}
		// The leader failed, maybe by its own deadline: ask ourselves.
		rrs, ttl, err := r.ask(ctx, name, fqdn, qtype)
		if ttl > 0 {
			r.cache.put(key, newCacheEntry(rrs, err, r.now().Add(ttl)), r.now())
		}
		return rrs, err
	}
	rrs, ttl, err := r.ask(ctx, name, fqdn, qtype)
	r.cache.finish(key, f, newCacheEntry(rrs, err, r.now().Add(ttl)), ttl > 0, r.now())
	return rrs, err
}

// ask asks each server in turn, queryAttempts rounds, until one answers
// with NOERROR or NXDOMAIN, and returns the answer records of qtype and
// how long the answer (or its absence) may be kept; 0 for failures.
func (r *Resolver) ask(ctx context.Context, name, fqdn string, qtype uint16) ([]dns.RR, time.Duration, error) {
	tname := dns.TypeToString[qtype]
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.SetEdns0(1232, false)

	var lastErr error
	for range queryAttempts {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, 0, &DNSError{Name: name, Type: tname, Err: err}
			}
			resp, err := r.exchange(ctx, m, srv)
			if err != nil {
				lastErr = fmt.Errorf("ask %s: %w", srv, err)
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess:
				rrs := answersFor(resp, fqdn, qtype)
				if len(rrs) == 0 {
					return nil, negativeTTL(resp), &DNSError{Name: name, Type: tname, NotFound: true}
				}
				return rrs, positiveTTL(resp), nil
			case dns.RcodeNameError:
				return nil, negativeTTL(resp), &DNSError{Name: name, Type: tname, NotFound: true, NXDomain: true}
			default:
				lastErr = fmt.Errorf("ask %s: rcode %s", srv, dns.RcodeToString[resp.Rcode])
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no DNS server configured")
	}
	return nil, 0, &DNSError{Name: name, Type: tname, Err: lastErr}
}

// exchange sends m over UDP, and again over TCP when the answer is
// truncated. Cancelling ctx closes the connection at once.
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	resp, err := r.exchangeNet(ctx, "udp", m, srv)
	if err == nil && resp.Truncated {
		resp, err = r.exchangeNet(ctx, "tcp", m, srv)
	}
	return resp, err
}

func (r *Resolver) exchangeNet(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: r.timeout}
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := c.DialContext(dctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(dctx, m, conn)
	if err != nil && dctx.Err() != nil {
		return nil, fmt.Errorf("%w (%v)", dctx.Err(), err)
	}
	return resp, err
}

// answersFor returns the records of qtype that answer name, following the
// CNAME chain a recursive server puts before them.
func answersFor(resp *dns.Msg, name string, qtype uint16) []dns.RR {
	want := strings.ToLower(name)
	var out []dns.RR
	for range 8 { // bounded CNAME chain
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if strings.ToLower(h.Name) != want {
				continue
			}
			if h.Rrtype == qtype {
				out = append(out, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				next = strings.ToLower(c.Target)
			}
		}
		if len(out) > 0 || next == "" {
			return out
		}
		want = next
	}
	return out
}

// validQueryName reports whether fqdn can be sent as a question.
func validQueryName(fqdn string) bool {
	if len(fqdn) > 254 || fqdn == "." {
		return false
	}
	for i := 0; i < len(fqdn); i++ {
		if c := fqdn[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	_, ok := dns.IsDomainName(fqdn)
	return ok
}

// unescapeTXT undoes miekg/dns's presentation escapes of a TXT string
// (\" \\ and \DDD), giving the bytes on the wire.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n, err := strconv.Atoi(s[i+1 : i+4]); err == nil && n < 256 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
