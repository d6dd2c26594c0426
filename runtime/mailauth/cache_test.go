package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is the cache's clock in tests, moved by hand.
type testClock struct{ t atomic.Int64 }

func newTestClock(r *Resolver) *testClock {
	c := &testClock{}
	c.t.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	r.Now = func() time.Time { return time.Unix(0, c.t.Load()) }
	return c
}

func (c *testClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// cacheZone serves the records of the cache tests; negative answers carry
// a SOA whose MINIMUM (120 s) is below its TTL.
func cacheZone(t *testing.T) *testDNS {
	z := startDNS(t,
		`pos.test. 300 A 192.0.2.1`,
		`pos.test. 200 A 192.0.2.2`,
		`alias.test. 100 CNAME pos.test.`,
		`long.test. 86400 TXT "kept an hour"`,
		`zero.test. 0 A 192.0.2.4`,
		`mx.test. 600 MX 20 b.mx.test.`,
		`mx.test. 600 MX 10 a.mx.test.`,
		`null.test. 300 MX 0 .`,
		`nodata.test. 300 A 192.0.2.3`,
		`ptr.test. 300 A 192.0.2.5`,
		`5.2.0.192.in-addr.arpa. 400 PTR ptr.test.`,
	)
	z.Add(`test. 3600 SOA ns.test. hostmaster.test. 1 3600 600 86400 120`)
	z.servfail("broken.test")
	return z
}

// TestResolverCache: an answer is asked once within its TTL and again
// after it; negative answers are kept for the SOA minimum and keep their
// kind; failures and TTL 0 are not kept.
func TestResolverCache(t *testing.T) {
	z := cacheZone(t)
	ctx := t.Context()
	type result struct {
		got string
		err error
	}
	show := func(v any, err error) result { return result{fmt.Sprint(v), err} }
	for _, c := range []struct {
		name   string
		lookup func(r *Resolver, name string) result
		want   string        // the answer, or "" for an error
		kind   string        // "", "nodata", "nxdomain" or "temporary"
		ttl    time.Duration // 0: not cached
	}{
		{"pos.test", func(r *Resolver, n string) result { return show(r.LookupIP(ctx, "ip4", n)) }, "[192.0.2.1 192.0.2.2]", "", 200 * time.Second},
		{"alias.test", func(r *Resolver, n string) result { return show(r.LookupIP(ctx, "ip4", n)) }, "[192.0.2.1 192.0.2.2]", "", 100 * time.Second},
		{"long.test", func(r *Resolver, n string) result { return show(r.LookupTXT(ctx, n)) }, "[kept an hour]", "", time.Hour},
		{"mx.test", func(r *Resolver, n string) result { return show(r.LookupMX(ctx, n)) }, "[a.mx.test b.mx.test]", "", 600 * time.Second},
		{"mx.test", func(r *Resolver, n string) result { return show(r.LookupMXRecords(ctx, n)) }, "[{a.mx.test 10} {b.mx.test 20}]", "", 600 * time.Second},
		{"null.test", func(r *Resolver, n string) result { return show(r.LookupMXRecords(ctx, n)) }, "[{ 0}]", "", 300 * time.Second},
		{"ptr.test", func(r *Resolver, n string) result {
			return show(r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.5")))
		}, "[ptr.test]", "", 400 * time.Second},
		{"nodata.test", func(r *Resolver, n string) result { return show(r.LookupMXRecords(ctx, n)) }, "", "nodata", 120 * time.Second},
		{"nodata.test", func(r *Resolver, n string) result { return show(r.LookupIP(ctx, "ip6", n)) }, "", "nodata", 120 * time.Second},
		{"nowhere.test", func(r *Resolver, n string) result { return show(r.LookupMXRecords(ctx, n)) }, "", "nxdomain", 120 * time.Second},
		{"nowhere.test", func(r *Resolver, n string) result { return show(r.LookupTXT(ctx, n)) }, "", "nxdomain", 120 * time.Second},
		{"broken.test", func(r *Resolver, n string) result { return show(r.LookupMXRecords(ctx, n)) }, "", "temporary", 0},
		{"zero.test", func(r *Resolver, n string) result { return show(r.LookupIP(ctx, "ip4", n)) }, "[192.0.2.4]", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewResolver([]string{z.Addr}, 500*time.Millisecond)
			clock := newTestClock(r)
			check := func(step, name string) int {
				t.Helper()
				before := z.Queries()
				res := c.lookup(r, name)
				var de *DNSError
				switch {
				case c.kind == "" && (res.err != nil || res.got != c.want):
					t.Fatalf("%s: got %s %v, want %s", step, res.got, res.err, c.want)
				case c.kind != "" && !errors.As(res.err, &de):
					t.Fatalf("%s: got %s %v, want a DNSError", step, res.got, res.err)
				case c.kind != "" && c.name != "ptr.test" && de.Name != name:
					t.Fatalf("%s: error names %q, want %q", step, de.Name, name)
				case c.kind == "nodata" && (!errors.Is(res.err, ErrNotFound) || IsNXDomain(res.err)):
					t.Fatalf("%s: got %v, want NODATA", step, res.err)
				case c.kind == "nxdomain" && (!errors.Is(res.err, ErrNotFound) || !IsNXDomain(res.err)):
					t.Fatalf("%s: got %v, want NXDOMAIN", step, res.err)
				case c.kind == "temporary" && (errors.Is(res.err, ErrNotFound) || !de.Temporary()):
					t.Fatalf("%s: got %v, want a temporary failure", step, res.err)
				}
				return z.Queries() - before
			}
			asked := check("first lookup", c.name)
			if asked == 0 {
				t.Fatal("first lookup asked nothing")
			}
			// Within the TTL, and under another spelling of the name.
			clock.advance(max(c.ttl-time.Second, 0))
			n := check("within the TTL", strings.ToUpper(c.name)+".")
			switch {
			case c.ttl > 0 && n != 0:
				t.Fatalf("within the TTL: %d queries, want none (cached)", n)
			case c.ttl == 0 && n != asked:
				t.Fatalf("not cacheable: %d queries, want %d", n, asked)
			}
			if c.ttl == 0 {
				return
			}
			clock.advance(time.Second)
			if n := check("at the end of the TTL", c.name); n != asked {
				t.Fatalf("at the end of the TTL: %d queries, want %d (asked again)", n, asked)
			}
		})
	}
}

// TestResolverCacheNegativeDefault: without a SOA in the answer, a
// negative answer is kept for negativeDefaultTTL.
func TestResolverCacheNegativeDefault(t *testing.T) {
	z := startDNS(t, `a.test. A 192.0.2.1`)
	r := NewResolver([]string{z.Addr}, 500*time.Millisecond)
	clock := newTestClock(r)
	ctx := t.Context()
	for _, step := range []struct {
		advance time.Duration
		asks    int
	}{{0, 1}, {negativeDefaultTTL - time.Second, 0}, {time.Second, 1}} {
		clock.advance(step.advance)
		before := z.Queries()
		_, err := r.LookupMXRecords(ctx, "nowhere.test")
		if !IsNXDomain(err) {
			t.Fatalf("got %v, want NXDOMAIN", err)
		}
		if n := z.Queries() - before; n != step.asks {
			t.Fatalf("after %v: %d queries, want %d", step.advance, n, step.asks)
		}
	}
}

// TestResolverCacheCopies: a caller that changes a returned slice changes
// nothing for the next one.
func TestResolverCacheCopies(t *testing.T) {
	z := cacheZone(t)
	r := NewResolver([]string{z.Addr}, 500*time.Millisecond)
	ctx := t.Context()
	for range 2 {
		ips, err := r.LookupIP(ctx, "ip4", "pos.test")
		if err != nil || len(ips) != 2 || ips[0] != netip.MustParseAddr("192.0.2.1") {
			t.Fatalf("got %v %v", ips, err)
		}
		ips[0] = netip.MustParseAddr("198.51.100.1")
		mxs, err := r.LookupMXRecords(ctx, "mx.test")
		if err != nil || mxs[0].Host != "a.mx.test" {
			t.Fatalf("got %v %v", mxs, err)
		}
		mxs[0].Host = "evil.test"
	}
}

// TestResolverCacheBound: the cache holds at most its bound, drops
// expired entries first, and serves many goroutines at once.
func TestResolverCacheBound(t *testing.T) {
	var recs []string
	for i := range 40 {
		recs = append(recs, fmt.Sprintf("h%d.test. %d A 192.0.2.%d", i, 60+i, i+1))
	}
	z := startDNS(t, recs...)
	r := NewResolver([]string{z.Addr}, 500*time.Millisecond)
	r.cache = newAnswerCache(16)
	clock := newTestClock(r)
	ctx := t.Context()

	for i := range 40 {
		if _, err := r.LookupIP(ctx, "ip4", fmt.Sprintf("h%d.test", i)); err != nil {
			t.Fatal(err)
		}
		if n := r.cache.len(); n > 16 {
			t.Fatalf("after %d names: %d entries, bound 16", i+1, n)
		}
	}
	// The last name is kept (it was just stored).
	before := z.Queries()
	if _, err := r.LookupIP(ctx, "ip4", "h39.test"); err != nil || z.Queries() != before {
		t.Fatalf("h39.test asked again (%v): the newest entry was dropped", err)
	}

	// All expired: one more name finds them dropped, not random ones.
	clock.advance(time.Hour)
	if _, err := r.LookupIP(ctx, "ip6", "h0.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if n := r.cache.len(); n != 1 {
		t.Fatalf("%d entries after the expiry, want 1", n)
	}

	// Many goroutines, fewer names than goroutines, under -race.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 20 {
				name := fmt.Sprintf("h%d.test", (g+i)%40)
				ips, err := r.LookupIP(ctx, "ip4", name)
				if err != nil || len(ips) != 1 {
					errs <- fmt.Errorf("%s: %v %v", name, ips, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.cache.len(); n > 16 {
		t.Fatalf("%d entries, bound 16", n)
	}
}

// BenchmarkResolverLookup: the CPU of a lookup answered by the cache and
// of one that asks the server (on loopback) each time.
func BenchmarkResolverLookup(b *testing.B) {
	z := startDNS(b, `mx.test. 300 MX 10 a.mx.test.`, `mx.test. 300 MX 20 b.mx.test.`, `a.mx.test. 300 A 192.0.2.1`)
	for _, bc := range []struct {
		name   string
		cached bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewResolver([]string{z.Addr}, time.Second)
			if !bc.cached {
				r.cache = nil
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.LookupMXRecords(ctx, "mx.test"); err != nil {
					b.Fatal(err)
				}
				if _, err := r.LookupIP(ctx, "ip4", "a.mx.test"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestResolverCacheInflight: callers asking the same question at once
// share one exchange; a failure is not shared, each caller asks itself.
func TestResolverCacheInflight(t *testing.T) {
	z := cacheZone(t)
	z.mu.Lock()
	z.delay = 200 * time.Millisecond // all callers arrive while it is on the wire
	z.mu.Unlock()
	ctx := t.Context()
	for _, c := range []struct {
		name    string
		perCall int // queries per caller when nothing is shared
		shared  bool
	}{{"mx.test", 1, true}, {"nowhere.test", 1, true}, {"broken.test", queryAttempts, false}} {
		t.Run(c.name, func(t *testing.T) {
			r := NewResolver([]string{z.Addr}, 2*time.Second)
			const callers = 16
			before := z.Queries()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() { _, _ = r.LookupMXRecords(ctx, c.name) })
			}
			wg.Wait()
			want := callers * c.perCall
			if c.shared {
				want = 1
			}
			if n := z.Queries() - before; n != want {
				t.Fatalf("%d queries for %d callers, want %d", n, callers, want)
			}
		})
	}
}

// TestResolverCacheInflightCancel: a caller waiting for another's
// exchange stops when its own context ends.
func TestResolverCacheInflightCancel(t *testing.T) {
	z := startDNS(t)
	z.set(z.drop, "silent.test")
	r := NewResolver([]string{z.Addr}, 5*time.Second)
	lctx, stopLeader := context.WithCancel(t.Context())
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		_, _ = r.LookupTXT(lctx, "silent.test")
	}()
	defer func() { stopLeader(); <-leaderDone }()
	// Wait until the leader's question is on the wire.
	for z.Queries() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.LookupTXT(wctx, "silent.test")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the waiter's deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the waiter returned after %v, with the leader", d)
	}
	if z.Queries() != 1 {
		t.Fatalf("%d queries, want the leader's only", z.Queries())
	}
}
