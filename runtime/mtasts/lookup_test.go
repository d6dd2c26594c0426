package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/tlscert/certtest"
)

// startDNS starts the DNS server of the tests' _mta-sts records. TTL 0
// everywhere: the tests change records at will, and mailauth's resolver
// must keep none of them, negative answers (the SOA's) included.
func startDNS(t *testing.T) *dnstest.Server {
	return dnstest.New(t, "example.com. 0 SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 0")
}

// setTXT replaces the TXT records of name; none removes them.
func (e *env) setTXT(name string, txts ...string) {
	var records []string
	for _, txt := range txts {
		records = append(records, dns.Fqdn(name)+` 0 TXT "`+txt+`"`)
	}
	e.dns.Set(name, dns.TypeTXT, records...)
}

// setServfail makes the DNS server answer SERVFAIL to every query, or
// answer from its records again.
func (e *env) setServfail(on bool) {
	if !on {
		e.dns.SetHandler(nil)
		return
	}
	e.dns.SetHandler(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
	})
}

// policyServer is an HTTPS server on loopback playing every mta-sts.<domain>
// host; its certificate, from a test authority, is valid for the
// mta-sts.<domain> names of certNames only.
type policyServer struct {
	srv     *httptest.Server
	ca      *certtest.CA // the authority of srv's certificate
	mu      sync.Mutex
	bodies  map[string]string // by Host
	status  map[string]int
	fetches map[string]int
	delay   time.Duration
}

const enforceBody = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mx.example.com\r\nmax_age: 86400\r\n"

func startPolicyServer(t *testing.T) *policyServer {
	t.Helper()
	ps := &policyServer{ca: certtest.New(t), bodies: map[string]string{}, status: map[string]int{}, fetches: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/mta-sts.txt", func(w http.ResponseWriter, r *http.Request) {
		ps.mu.Lock()
		ps.fetches[r.Host]++
		body, status, delay := ps.bodies[r.Host], ps.status[r.Host], ps.delay
		ps.mu.Unlock()
		time.Sleep(delay)
		switch r.Host {
		case "mta-sts.redirect.example.com":
			http.Redirect(w, r, "https://mta-sts.example.com/.well-known/mta-sts.txt", http.StatusMovedPermanently)
			return
		case "mta-sts.big.example.com":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, enforceBody)
			for range MaxPolicySize / 16 {
				fmt.Fprint(w, "x: padding.....\n")
			}
			return
		case "mta-sts.html.example.com":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, enforceBody)
			return
		}
		if status != 0 {
			http.Error(w, "unavailable", status)
			return
		}
		if body == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, body)
	})
	ps.srv = httptest.NewUnstartedServer(mux)
	ps.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ps.ca.Issue(t, certNames...)}}
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

// certNames are the names of the test server's certificate: example.org
// is left out, for the certificate that does not match.
var certNames = []string{
	"mta-sts.example.com", "mta-sts.redirect.example.com", "mta-sts.big.example.com",
	"mta-sts.html.example.com", "mta-sts.missing.example.com",
}

func (ps *policyServer) set(host, body string, status int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.bodies[host], ps.status[host] = body, status
}

func (ps *policyServer) count(host string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.fetches[host]
}

// clock is a settable time for the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	dns   *dnstest.Server
	https *policyServer
	clock *clock
	cfg   Config
}

// newEnv starts both servers and returns a Config whose resolver asks the
// test DNS server, whose roots trust the test HTTPS server, and whose
// dialer sends every host name to it.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dns: startDNS(t), https: startPolicyServer(t), clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	target := e.https.srv.Listener.Addr().String()
	e.cfg = Config{
		Resolver:  mailauth.NewResolver([]string{e.dns.Addr()}, 2*time.Second),
		TLSConfig: &tls.Config{RootCAs: e.https.ca.Pool()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
		FetchTimeout: 10 * time.Second,
		Now:          e.clock.Now,
	}
	return e
}

func newCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestLookupCache follows one domain through the rules of RFC 8461 §5.1.
func TestLookupCache(t *testing.T) {
	e := newEnv(t)
	c := newCache(t, e.cfg)
	ctx := t.Context()
	const host = "mta-sts.example.com"
	e.setTXT("_mta-sts.example.com", "v=spf1 -all", "v=STSv1; id=1;")
	e.https.set(host, enforceBody, 0)

	lookup := func(step string, wantMode Mode, wantErr bool, wantFetches int) *Policy {
		t.Helper()
		p, err := c.Lookup(ctx, "Example.COM.")
		if (err != nil) != wantErr {
			t.Fatalf("%s: Lookup error %v, want error %v", step, err, wantErr)
		}
		if wantMode == "" && p != nil || wantMode != "" && (p == nil || p.Mode != wantMode) {
			t.Fatalf("%s: Lookup = %+v, want mode %q", step, p, wantMode)
		}
		if n := e.https.count(host); n != wantFetches {
			t.Fatalf("%s: %d fetches, want %d", step, n, wantFetches)
		}
		return p
	}

	p := lookup("first lookup", ModeEnforce, false, 1)
	if !p.MatchMX("a.mx.example.com") || p.MatchMX("mx.example.com") || p.MaxAge != 24*time.Hour {
		t.Fatalf("policy %+v", p)
	}
	lookup("same id: cache hit", ModeEnforce, false, 1)

	e.https.set(host, strings.Replace(enforceBody, "enforce", "testing", 1), 0)
	lookup("same id, new body: still cached", ModeEnforce, false, 1)
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=2;")
	lookup("new id: refetch", ModeTesting, false, 2)

	e.clock.advance(24*time.Hour + time.Second)
	e.https.set(host, enforceBody, 0)
	lookup("expired: refetch", ModeEnforce, false, 3)

	e.setTXT("_mta-sts.example.com", "v=STSv1; id=3;")
	e.https.set(host, "", http.StatusServiceUnavailable)
	lookup("new id, fetch fails: cached kept", ModeEnforce, true, 4)

	e.https.set(host, "version: STSv9\nmode: none\nmax_age: 1\n", 0)
	lookup("new id, invalid policy: cached kept", ModeEnforce, true, 5)

	e.setTXT("_mta-sts.example.com")
	lookup("record removed: cached kept", ModeEnforce, false, 5)

	e.setTXT("_mta-sts.example.com", "v=STSv1; id=3;", "v=STSv1; id=4;")
	lookup("two records: cached kept", ModeEnforce, true, 5)

	e.setServfail(true)
	lookup("DNS failure: cached kept", ModeEnforce, true, 5)
	e.setServfail(false)

	e.clock.advance(24*time.Hour + time.Second)
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=3;")
	e.https.set(host, "", http.StatusServiceUnavailable)
	lookup("expired and fetch fails: none", "", true, 6)

	e.setTXT("_mta-sts.example.com")
	lookup("no record, nothing cached: none, no error", "", false, 6)
}

// TestFetchRefused checks the fetch rules of RFC 8461 §3.3 on domains
// never seen before: each refusal leaves the domain without a policy and
// says why.
func TestFetchRefused(t *testing.T) {
	e := newEnv(t)
	e.https.set("mta-sts.example.com", enforceBody, 0)
	e.https.set("mta-sts.example.org", enforceBody, 0)
	tests := []struct {
		name    string
		domain  string
		cfg     func(*Config)
		wantErr string
	}{
		{name: "redirect", domain: "redirect.example.com", wantErr: "redirect not followed"},
		{name: "oversized body", domain: "big.example.com", wantErr: "larger than 65536"},
		{name: "content type", domain: "html.example.com", wantErr: `content type "text/html"`},
		{name: "not found", domain: "missing.example.com", wantErr: "status 404"},
		{name: "certificate for another name", domain: "example.org", wantErr: "not mta-sts.example.org"},
		{name: "certificate of an unknown authority", domain: "example.com",
			cfg: func(c *Config) { c.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool()} }, wantErr: "unknown authority"},
		{name: "verification cannot be turned off", domain: "example.com",
			cfg: func(c *Config) {
				c.TLSConfig = &tls.Config{RootCAs: x509.NewCertPool(), InsecureSkipVerify: true}
			}, wantErr: "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.cfg
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newCache(t, cfg)
			e.setTXT("_mta-sts."+tt.domain, "v=STSv1; id=1;")
			p, err := c.Lookup(t.Context(), tt.domain)
			if p != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Lookup = %+v, %v; want no policy and an error containing %q", p, err, tt.wantErr)
			}
		})
	}
	// The redirect's target was never asked for.
	if n := e.https.count("mta-sts.example.com"); n != 0 {
		t.Fatalf("%d fetches of the redirect's target or through an untrusted certificate", n)
	}
	// And the same servers work when nothing is wrong.
	c := newCache(t, e.cfg)
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=1;")
	if p, err := c.Lookup(t.Context(), "example.com"); err != nil || p == nil || p.Mode != ModeEnforce {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
}

func TestFetchTimeout(t *testing.T) {
	e := newEnv(t)
	e.https.set("mta-sts.example.com", enforceBody, 0)
	e.https.mu.Lock()
	e.https.delay = 2 * time.Second
	e.https.mu.Unlock()
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=1;")
	cfg := e.cfg
	cfg.FetchTimeout = 200 * time.Millisecond
	c := newCache(t, cfg)
	p, err := c.Lookup(t.Context(), "example.com")
	if p != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup = %+v, %v; want a deadline error", p, err)
	}
}

func TestLookupInvalidDomain(t *testing.T) {
	e := newEnv(t)
	c := newCache(t, e.cfg)
	for _, d := range []string{"", "*.example.com", "a b.example.com", "localhost", "x..example.com"} {
		if p, err := c.Lookup(t.Context(), d); p != nil || err == nil {
			t.Errorf("Lookup(%q) = %+v, %v; want an error", d, p, err)
		}
	}
}

// TestConcurrentLookups: lookups of one domain share one fetch, under the
// race detector.
func TestConcurrentLookups(t *testing.T) {
	e := newEnv(t)
	e.https.set("mta-sts.example.com", enforceBody, 0)
	e.https.mu.Lock()
	e.https.delay = 300 * time.Millisecond
	e.https.mu.Unlock()
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=1;")
	c := newCache(t, e.cfg)
	const n = 20
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range n {
		wg.Go(func() {
			if p, err := c.Lookup(t.Context(), "example.com"); err == nil && p != nil && p.Mode == ModeEnforce {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d lookups got the policy", ok.Load(), n)
	}
	// Lookups that arrive while the fetch runs wait for it; only one
	// that read the cache just before the fetch was stored could start
	// another: far fewer fetches than lookups.
	if f := e.https.count("mta-sts.example.com"); f < 1 || f > n/4 {
		t.Fatalf("%d fetches for %d concurrent lookups", f, n)
	}
}

// TestCacheFile: a policy survives a restart through the file, and a
// restarted cache does not fetch it again while the id is unchanged.
func TestCacheFile(t *testing.T) {
	e := newEnv(t)
	e.https.set("mta-sts.example.com", enforceBody, 0)
	e.setTXT("_mta-sts.example.com", "v=STSv1; id=1;")
	cfg := e.cfg
	cfg.File = filepath.Join(t.TempDir(), "mta-sts.json")
	c := newCache(t, cfg)
	if p, err := c.Lookup(t.Context(), "example.com"); err != nil || p == nil {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
	if fi, err := os.Stat(cfg.File); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v", fi, err)
	}

	c2 := newCache(t, cfg)
	e.https.set("mta-sts.example.com", "", http.StatusServiceUnavailable)
	p, err := c2.Lookup(t.Context(), "example.com")
	if err != nil || p == nil || p.Mode != ModeEnforce || !p.MatchMX("mx1.example.com") {
		t.Fatalf("after restart: Lookup = %+v, %v", p, err)
	}
	if n := e.https.count("mta-sts.example.com"); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// An expired entry is not loaded.
	e.clock.advance(25 * time.Hour)
	c3 := newCache(t, cfg)
	if p, err := c3.Lookup(t.Context(), "example.com"); p != nil || err == nil {
		t.Fatalf("expired entry loaded: %+v, %v", p, err)
	}

	// A damaged file is ignored, not fatal.
	if err := os.WriteFile(cfg.File, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.https.set("mta-sts.example.com", enforceBody, 0)
	c4 := newCache(t, cfg)
	if p, err := c4.Lookup(t.Context(), "example.com"); err != nil || p == nil {
		t.Fatalf("with a damaged file: Lookup = %+v, %v", p, err)
	}
}
