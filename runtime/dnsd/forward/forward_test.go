package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

// clock is the cache's clock in the tests: it moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const soa = "example. 3600 IN SOA ns.example. admin.example. 1 7200 900 1209600 120"

var records = []string{
	"www.example. 300 IN A 192.0.2.1",
	"www.example. 300 IN A 192.0.2.2",
	"long.example. 86400 IN A 192.0.2.3",
	"zero.example. 0 IN A 192.0.2.4",
	"mx.example. 600 IN MX 10 mail.example.",
}

// forwarder returns a forwarder of ups with short timeouts and the
// test's clock, and its metrics.
func forwarder(t *testing.T, clk *clock, ups ...*upstream) (*Forwarder, *metricstest.Counts) {
	t.Helper()
	var addrs []netip.AddrPort
	for _, u := range ups {
		addrs = append(addrs, u.addr)
	}
	m := &metricstest.Counts{}
	cfg := Config{
		Upstreams:    func() []netip.AddrPort { return addrs },
		QueryTimeout: 300 * time.Millisecond,
		Timeout:      5 * time.Second,
		Metrics:      m,
	}
	if clk != nil {
		cfg.Now = clk.Now
	}
	return New(cfg), m
}

// query is a client's query; opts change it.
func query(name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, o := range opts {
		o(m)
	}
	return m
}

func withDO(m *dns.Msg)   { m.SetEdns0(4096, true) }
func withEDNS(m *dns.Msg) { m.SetEdns0(4096, false) }
func withCD(m *dns.Msg)   { m.CheckingDisabled = true }
func noRD(m *dns.Msg)     { m.RecursionDesired = false }

func resolve(t *testing.T, f *Forwarder, q *dns.Msg) *dns.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := f.Resolve(ctx, q)
	if err != nil {
		t.Fatalf("Resolve %v: %v", q.Question, err)
	}
	if r.Id != q.Id {
		t.Errorf("reply ID %d, query ID %d", r.Id, q.Id)
	}
	return r
}

func answerStrings(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		out = append(out, rr.String())
	}
	return out
}

// TestForwarded: what the upstream receives and what the client gets
// back, flags and EDNS included.
func TestForwarded(t *testing.T) {
	u := startUpstream(t, append(records, soa)...)
	tests := []struct {
		name  string
		q     *dns.Msg
		rcode int
		// what the upstream must see
		upName     string
		upRD, upCD bool
		upDO       bool
		// what the client must get
		answers int
		opt     bool // an OPT record
		do, ad  bool
	}{
		{name: "A, no EDNS", q: query("www.example.", dns.TypeA),
			upName: "www.example.", upRD: true, answers: 2},
		{name: "MX with EDNS", q: query("mx.example.", dns.TypeMX, withEDNS),
			upName: "mx.example.", upRD: true, answers: 1, opt: true},
		{name: "DO and CD kept, AD given back", q: query("www.example.", dns.TypeA, withDO, withCD),
			upName: "www.example.", upRD: true, upCD: true, upDO: true, answers: 2, opt: true, do: true, ad: true},
		{name: "RD=0 kept", q: query("www.example.", dns.TypeA, noRD),
			upName: "www.example.", answers: 2},
		{name: "case of the name kept", q: query("WwW.ExAmple.", dns.TypeA),
			upName: "WwW.ExAmple.", upRD: true, answers: 2},
		{name: "NXDOMAIN", q: query("nope.example.", dns.TypeA), rcode: dns.RcodeNameError,
			upName: "nope.example.", upRD: true},
		{name: "NODATA", q: query("www.example.", dns.TypeAAAA, withEDNS),
			upName: "www.example.", upRD: true, opt: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := forwarder(t, nil, u) // a cache of its own
			tt.q.Id = uint16(1000 + i)
			r := resolve(t, f, tt.q)
			up := u.lastQuery()
			if up.Question[0].Name != tt.upName || up.RecursionDesired != tt.upRD || up.CheckingDisabled != tt.upCD {
				t.Errorf("upstream got %v RD %v CD %v, want %s RD %v CD %v", up.Question, up.RecursionDesired, up.CheckingDisabled, tt.upName, tt.upRD, tt.upCD)
			}
			if o := up.IsEdns0(); o == nil || o.UDPSize() != udpSize || o.Do() != tt.upDO || len(o.Option) != 0 {
				t.Errorf("upstream got OPT %v, want size %d DO %v without options", o, udpSize, tt.upDO)
			}
			if up.Id == tt.q.Id {
				t.Errorf("the upstream query reuses the client's ID %d", up.Id)
			}
			if r.Rcode != tt.rcode || len(r.Answer) != tt.answers {
				t.Errorf("reply %s with %d answers, want %s with %d:\n%v", dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tt.rcode], tt.answers, r)
			}
			if len(r.Question) != 1 || r.Question[0] != tt.q.Question[0] {
				t.Errorf("reply question %v, want %v", r.Question, tt.q.Question)
			}
			if !r.Response || r.RecursionDesired != tt.q.RecursionDesired || r.CheckingDisabled != tt.q.CheckingDisabled || r.Authoritative || !r.RecursionAvailable {
				t.Errorf("reply flags %+v", r.MsgHdr)
			}
			o := r.IsEdns0()
			if (o != nil) != tt.opt || o != nil && o.Do() != tt.do {
				t.Errorf("reply OPT %v, want present %v DO %v", o, tt.opt, tt.do)
			}
			if !r.Compress {
				t.Error("reply without name compression")
			}
			if r.AuthenticatedData != tt.ad {
				t.Errorf("reply AD %v, want %v", r.AuthenticatedData, tt.ad)
			}
			if (tt.rcode != 0 || tt.answers == 0) && authoritySOA(r) == nil {
				t.Errorf("negative reply without its SOA:\n%v", r)
			}
		})
	}
}

// TestCache: which second query is answered from the cache (the
// upstream asked once) and which goes upstream again.
func TestCache(t *testing.T) {
	tests := []struct {
		name          string
		first, second *dns.Msg
		records       []string // the upstream's, besides records; nil SOA unless listed
		mode          string
		after         time.Duration // between the two queries
		wantAsked     int
		wantErr       bool
	}{
		{name: "positive within its TTL", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA),
			after: 299 * time.Second, wantAsked: 1},
		{name: "positive expired", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA),
			after: 300 * time.Second, wantAsked: 2},
		{name: "name case does not matter", first: query("www.example.", dns.TypeA), second: query("WWW.EXAMPLE.", dns.TypeA),
			wantAsked: 1},
		{name: "type matters", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeMX),
			wantAsked: 2},
		{name: "DO matters", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA, withDO),
			wantAsked: 2},
		{name: "EDNS without DO does not", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA, withEDNS),
			wantAsked: 1},
		{name: "CD matters", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA, withCD),
			wantAsked: 2},
		{name: "RD matters", first: query("www.example.", dns.TypeA, noRD), second: query("www.example.", dns.TypeA),
			wantAsked: 2},
		{name: "positive capped at an hour, within", first: query("long.example.", dns.TypeA), second: query("long.example.", dns.TypeA),
			after: time.Hour - time.Second, wantAsked: 1},
		{name: "positive capped at an hour", first: query("long.example.", dns.TypeA), second: query("long.example.", dns.TypeA),
			after: time.Hour, wantAsked: 2},
		{name: "TTL 0 not kept", first: query("zero.example.", dns.TypeA), second: query("zero.example.", dns.TypeA),
			wantAsked: 2},
		{name: "NXDOMAIN for the SOA minimum, within", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			records: []string{soa}, after: 119 * time.Second, wantAsked: 1},
		{name: "NXDOMAIN for the SOA minimum", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			records: []string{soa}, after: 120 * time.Second, wantAsked: 2},
		{name: "NXDOMAIN for the SOA TTL when smaller", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			records: []string{"example. 30 IN SOA ns.example. admin.example. 1 7200 900 1209600 120"}, after: 30 * time.Second, wantAsked: 2},
		{name: "NODATA for the SOA minimum, within", first: query("www.example.", dns.TypeAAAA), second: query("www.example.", dns.TypeAAAA),
			records: []string{soa}, after: 119 * time.Second, wantAsked: 1},
		{name: "NODATA for the SOA minimum", first: query("www.example.", dns.TypeAAAA), second: query("www.example.", dns.TypeAAAA),
			records: []string{soa}, after: 120 * time.Second, wantAsked: 2},
		{name: "negative capped at 15 minutes, within", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			records: []string{"example. 86400 IN SOA ns.example. admin.example. 1 7200 900 1209600 86400"}, after: 15*time.Minute - time.Second, wantAsked: 1},
		{name: "negative capped at 15 minutes", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			records: []string{"example. 86400 IN SOA ns.example. admin.example. 1 7200 900 1209600 86400"}, after: 15 * time.Minute, wantAsked: 2},
		{name: "NXDOMAIN without SOA not kept", first: query("nope.example.", dns.TypeA), second: query("nope.example.", dns.TypeA),
			wantAsked: 2},
		{name: "NODATA without SOA not kept", first: query("www.example.", dns.TypeAAAA), second: query("www.example.", dns.TypeAAAA),
			wantAsked: 2},
		// A failing upstream is asked twice per query (rounds).
		{name: "SERVFAIL not kept", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA),
			mode: "servfail", wantAsked: 4, wantErr: true},
		{name: "REFUSED not kept", first: query("www.example.", dns.TypeA), second: query("www.example.", dns.TypeA),
			mode: "refused", wantAsked: 4, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startUpstream(t, append(records, tt.records...)...)
			u.set(tt.mode, 0)
			clk := newClock()
			f, _ := forwarder(t, clk, u)
			for i, q := range []*dns.Msg{tt.first, tt.second} {
				if i == 1 {
					clk.Advance(tt.after)
				}
				r, err := f.Resolve(context.Background(), q)
				if (err != nil) != tt.wantErr {
					t.Fatalf("query %d: %v, %v; want error %v", i+1, r, err, tt.wantErr)
				}
			}
			if got := u.Queries(); got != tt.wantAsked {
				t.Errorf("upstream asked %d times, want %d", got, tt.wantAsked)
			}
		})
	}
}

// TestCachedTTL: a cached answer's TTLs go down with the time it spent
// in the cache, and the reply is the client's own (its ID, its case).
func TestCachedTTL(t *testing.T) {
	u := startUpstream(t, append(records, soa)...)
	clk := newClock()
	f, m := forwarder(t, clk, u)
	tests := []struct {
		q       *dns.Msg
		after   time.Duration
		wantTTL uint32 // of every answer record, or of the SOA
	}{
		{query("www.example.", dns.TypeA), 0, 300},
		{query("www.example.", dns.TypeA), 100 * time.Second, 200},
		{query("WWW.example.", dns.TypeA), 99500 * time.Millisecond, 101},
		{query("www.example.", dns.TypeA), 100 * time.Second, 1},
		{query("nope.example.", dns.TypeA), 0, 3600},
		{query("nope.example.", dns.TypeA), 60 * time.Second, 3540},
	}
	for i, tt := range tests {
		clk.Advance(tt.after)
		tt.q.Id = uint16(i + 1)
		r := resolve(t, f, tt.q)
		if r.Question[0].Name != tt.q.Question[0].Name {
			t.Errorf("step %d: reply question %v, want %v", i, r.Question, tt.q.Question)
		}
		rrs := r.Answer
		if r.Rcode == dns.RcodeNameError {
			rrs = r.Ns
		}
		if len(rrs) == 0 {
			t.Fatalf("step %d: no records:\n%v", i, r)
		}
		for _, rr := range rrs {
			if rr.Header().Ttl != tt.wantTTL {
				t.Errorf("step %d: %v: TTL %d, want %d", i, rr, rr.Header().Ttl, tt.wantTTL)
			}
		}
	}
	if got := u.Queries(); got != 2 {
		t.Errorf("upstream asked %d times, want 2", got)
	}
	if c := m.Counts(); c["forward cache hit"] != 4 || c["forward cache miss"] != 2 {
		t.Errorf("metrics %v, want 4 hits and 2 misses", c)
	}
}

// TestFailover: an upstream that does not answer, or answers with a
// failure, gives way to the next.
func TestFailover(t *testing.T) {
	tests := []struct {
		mode       string
		wantResult string // the first upstream's exchange, for the metrics
	}{
		{"drop", ExchangeTimeout},
		{"servfail", ExchangeServfail},
		{"refused", ExchangeRefused},
		{"formerr", ExchangeError},
		{"closed", ExchangeError}, // nothing listens: ICMP port unreachable
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			bad := startUpstream(t, "www.example. 300 IN A 6.6.6.6")
			bad.set(tt.mode, 0)
			good := startUpstream(t, records...)
			f, m := forwarder(t, nil, bad, good)
			if tt.mode == "closed" {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				closed := netip.MustParseAddrPort(pc.LocalAddr().String())
				pc.Close()
				f.cfg.Upstreams = func() []netip.AddrPort { return []netip.AddrPort{closed, good.addr} }
			}
			r := resolve(t, f, query("www.example.", dns.TypeA))
			if got := answerStrings(r); len(got) != 2 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
				t.Errorf("answer %v, want the second upstream's", got)
			}
			if good.Queries() != 1 {
				t.Errorf("second upstream asked %d times, want 1", good.Queries())
			}
			if c := m.Counts(); c["forward exchange "+tt.wantResult] != 1 || c["forward exchange ok"] != 1 {
				t.Errorf("metrics %v, want one %s exchange and one ok", c, tt.wantResult)
			}
		})
	}
}

// TestAllUpstreamsFail: no answer is an error (the server answers
// SERVFAIL), and so is no upstream at all.
func TestAllUpstreamsFail(t *testing.T) {
	a, b := startUpstream(t), startUpstream(t)
	a.set("servfail", 0)
	b.set("drop", 0)
	f, _ := forwarder(t, nil, a, b)
	if r, err := f.Resolve(context.Background(), query("www.example.", dns.TypeA)); err == nil {
		t.Errorf("Resolve: %v, want an error", r)
	}
	// Two rounds.
	if a.Queries() != 2 || b.Queries() != 2 {
		t.Errorf("upstreams asked %d and %d times, want 2 and 2", a.Queries(), b.Queries())
	}
	f = New(Config{})
	if _, err := f.Resolve(context.Background(), query("www.example.", dns.TypeA)); !errors.Is(err, ErrNoUpstream) {
		t.Errorf("Resolve without upstreams: %v, want ErrNoUpstream", err)
	}
}

// TestTruncatedOverTCP: a truncated UDP answer is asked again over TCP.
func TestTruncatedOverTCP(t *testing.T) {
	u := startUpstream(t, records...)
	u.set("truncate", 0)
	f, _ := forwarder(t, nil, u)
	r := resolve(t, f, query("www.example.", dns.TypeA))
	if r.Truncated || len(r.Answer) != 2 {
		t.Errorf("reply TC %v with %d answers, want the whole answer:\n%v", r.Truncated, len(r.Answer), r)
	}
	if u.Queries() != 2 || u.TCPQueries() != 1 {
		t.Errorf("upstream asked %d times, %d over TCP; want 2, 1", u.Queries(), u.TCPQueries())
	}
}

// TestForgeriesDiscarded: a datagram that is not the answer to the query
// sent is never used, and the real answer that follows is.
func TestForgeriesDiscarded(t *testing.T) {
	tests := []struct {
		mode          string
		wantDiscarded int
	}{
		{"forge-question", 1},
		{"forge-type", 1},
		{"forge-id", 1},
		{"forge-query", 1},
		{"forge-garbage", 2},
		{"forge-addr", 0}, // the connected socket never sees it
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			u := startUpstream(t, records...)
			u.set(tt.mode, 0)
			f, m := forwarder(t, nil, u)
			r := resolve(t, f, query("www.example.", dns.TypeA))
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); !ok || a.A.String() == "6.6.6.6" || rr.Header().Name != "www.example." {
					t.Errorf("forged record in the reply: %v", rr)
				}
			}
			if len(r.Answer) != 2 {
				t.Errorf("reply %v, want the real answer", r)
			}
			if got := m.Counts()["forward discarded"]; got != tt.wantDiscarded {
				t.Errorf("%d datagrams discarded, want %d", got, tt.wantDiscarded)
			}
			// And the cache holds the real answer.
			r = resolve(t, f, query("www.example.", dns.TypeA))
			if len(r.Answer) != 2 || r.Answer[0].(*dns.A).A.String() == "6.6.6.6" {
				t.Errorf("cached reply %v, want the real answer", r)
			}
		})
	}
	// An upstream that only sends forgeries is one that does not
	// answer: the next is asked.
	t.Run("forge-only", func(t *testing.T) {
		bad := startUpstream(t, records...)
		bad.set("forge-only", 0)
		good := startUpstream(t, records...)
		f, _ := forwarder(t, nil, bad, good)
		r := resolve(t, f, query("www.example.", dns.TypeA))
		if len(r.Answer) != 2 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Errorf("reply %v, want the second upstream's answer", r)
		}
		if good.Queries() != 1 {
			t.Errorf("second upstream asked %d times, want 1", good.Queries())
		}
	})
}

// TestMaxEntries: the cache keeps at most MaxEntries answers, dropping
// the least recently used.
func TestMaxEntries(t *testing.T) {
	var rs []string
	for i := range 10 {
		rs = append(rs, fmt.Sprintf("n%d.example. 300 IN A 192.0.2.%d", i, i))
	}
	u := startUpstream(t, rs...)
	f := New(Config{Upstreams: func() []netip.AddrPort { return []netip.AddrPort{u.addr} }, MaxEntries: 3})
	ask := func(i int) { resolve(t, f, query(fmt.Sprintf("n%d.example.", i), dns.TypeA)) }
	for i := range 10 {
		ask(i)
	}
	if n := f.cache.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	steps := []struct {
		name  int
		asked bool // the upstream is asked: not in the cache
	}{
		{7, false}, // 7, 8, 9 kept; 7 now the most recent
		{0, true},  // 8, the least recent, dropped
		{7, false},
		{9, false},
		{8, true}, // dropped for 0
	}
	for i, s := range steps {
		before := u.Queries()
		ask(s.name)
		if asked := u.Queries() > before; asked != s.asked {
			t.Errorf("step %d (n%d): upstream asked %v, want %v", i, s.name, asked, s.asked)
		}
	}
	if n := f.cache.len(); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
}

// TestConcurrentQueriesShareOneExchange: identical queries while the
// answer is on the wire make one upstream exchange; each gets its own
// reply.
func TestConcurrentQueriesShareOneExchange(t *testing.T) {
	u := startUpstream(t, records...)
	u.set("", 300*time.Millisecond)
	f, m := forwarder(t, nil, u)
	f.cfg.QueryTimeout = 5 * time.Second
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			q := query("www.example.", dns.TypeA)
			q.Id = uint16(i + 1)
			r, err := f.Resolve(context.Background(), q)
			switch {
			case err != nil:
				errs <- err
			case r.Id != q.Id || len(r.Answer) != 2:
				errs <- fmt.Errorf("query %d: reply %v", q.Id, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := u.Queries(); got != 1 {
		t.Errorf("upstream asked %d times, want 1", got)
	}
	if c := m.Counts(); c["forward cache miss"] != 1 || c["forward cache shared"]+c["forward cache hit"] != n-1 {
		t.Errorf("metrics %v, want 1 miss and %d shared or hits", c, n-1)
	}
}

// TestLeaderGivesUp: when the query that leads the exchange gives up
// (its client's deadline), the one waiting for it asks in its place.
func TestLeaderGivesUp(t *testing.T) {
	u := startUpstream(t, records...)
	u.set("", 400*time.Millisecond)
	f, _ := forwarder(t, nil, u)
	f.cfg.QueryTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	leaderErr := make(chan error, 1)
	go func() {
		_, err := f.Resolve(ctx, query("www.example.", dns.TypeA))
		leaderErr <- err
	}()
	time.Sleep(30 * time.Millisecond) // the leader's exchange is on the wire
	r := resolve(t, f, query("www.example.", dns.TypeA))
	if len(r.Answer) != 2 {
		t.Errorf("waiter's reply %v", r)
	}
	if err := <-leaderErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("leader: %v, want its deadline", err)
	}
}

// TestDeadline: Resolve gives up at the caller's deadline (or at
// Config.Timeout without one), whatever the exchange timeout.
func TestDeadline(t *testing.T) {
	u := startUpstream(t, records...)
	u.set("drop", 0)
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration
	}{
		{"the context's deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, time.Hour},
		{"Config.Timeout", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(Config{
				Upstreams:    func() []netip.AddrPort { return []netip.AddrPort{u.addr} },
				QueryTimeout: time.Hour,
				Timeout:      tt.timeout,
			})
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				_, err := f.Resolve(ctx, query("www.example.", dns.TypeA))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Resolve: %v, want the deadline exceeded", err)
				}
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("Resolve took %v, want about 300ms", took)
				}
			case <-time.After(10 * time.Second):
				// Its goroutine stays blocked: the test has failed.
				t.Fatal("Resolve still waiting after 10 s, want about 300ms")
			}
		})
	}
}

// TestNotForwarded: queries the forwarder answers itself, without an
// upstream.
func TestNotForwarded(t *testing.T) {
	u := startUpstream(t, records...)
	f, _ := forwarder(t, nil, u)
	two := query("www.example.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	notify := query("example.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	response := query("www.example.", dns.TypeA)
	response.Response = true
	noQuestion := query("www.example.", dns.TypeA)
	noQuestion.Question = nil
	tests := []struct {
		name  string
		q     *dns.Msg
		rcode int
	}{
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", two, dns.RcodeFormatError},
		{"a response", response, dns.RcodeFormatError},
		{"NOTIFY", notify, dns.RcodeNotImplemented},
		{"AXFR", query("example.", dns.TypeAXFR), dns.RcodeRefused},
		{"IXFR", query("example.", dns.TypeIXFR), dns.RcodeRefused},
		{"nil", nil, dns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := f.Resolve(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode || !r.Response || tt.q != nil && r.Id != tt.q.Id {
				t.Errorf("reply %v, want %s", r, dns.RcodeToString[tt.rcode])
			}
			if _, err := r.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
	if u.Queries() != 0 {
		t.Errorf("upstream asked %d times, want never", u.Queries())
	}
}

// TestOnTheWire: the forwarder behind a DNS server on loopback, as the
// box's server uses it, asked by a client over UDP and TCP: the replies
// pack, and the client takes them (its ID, its question).
func TestOnTheWire(t *testing.T) {
	u := startUpstream(t, append(records, soa)...)
	f, _ := forwarder(t, nil, u)
	front := dnstest.New(t)
	front.SetHandler(func(w dns.ResponseWriter, q *dns.Msg) {
		r, err := f.Resolve(context.Background(), q)
		if err != nil {
			r = new(dns.Msg)
			r.SetRcode(q, dns.RcodeServerFailure)
		}
		if err := w.WriteMsg(dnstest.Truncate(w, q, r)); err != nil {
			t.Errorf("write the reply: %v", err)
		}
	})
	tests := []struct {
		net   string
		q     *dns.Msg
		rcode int
		n     int
	}{
		{"udp", query("www.example.", dns.TypeA), dns.RcodeSuccess, 2},
		{"tcp", query("WWW.example.", dns.TypeA, withDO), dns.RcodeSuccess, 2},
		{"udp", query("mx.example.", dns.TypeMX, withEDNS), dns.RcodeSuccess, 1},
		{"udp", query("nope.example.", dns.TypeA), dns.RcodeNameError, 0},
		{"tcp", query("example.", dns.TypeAXFR), dns.RcodeRefused, 0},
	}
	for _, tt := range tests {
		c := &dns.Client{Net: tt.net, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(tt.q, front.Addr())
		if err != nil {
			t.Errorf("%s %v: %v", tt.net, tt.q.Question, err)
			continue
		}
		if r.Rcode != tt.rcode || len(r.Answer) != tt.n || r.Question[0] != tt.q.Question[0] {
			t.Errorf("%s %v: reply\n%v\nwant %s with %d answers", tt.net, tt.q.Question, r, dns.RcodeToString[tt.rcode], tt.n)
		}
	}

	// And dig, a client of another make.
	dig := testenv.NeedTool(t, "dig")
	host, port, _ := net.SplitHostPort(front.Addr())
	digs := []struct {
		args []string
		want []string
	}{
		{[]string{"www.example.", "A"}, []string{"status: NOERROR", "192.0.2.1", "192.0.2.2", "flags: qr rd ra;"}},
		{[]string{"+tcp", "+dnssec", "mx.example.", "MX"}, []string{"status: NOERROR", "10 mail.example.", "flags: do;"}},
		{[]string{"+noedns", "nope.example.", "A"}, []string{"status: NXDOMAIN", "SOA"}},
	}
	for _, d := range digs {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		args := append([]string{"@" + host, "-p", port, "+tries=1", "+time=5"}, d.args...)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("dig %v: %v\n%s", args, err, out)
			continue
		}
		for _, w := range d.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("dig %v: no %q in\n%s", args, w, out)
			}
		}
	}
}
