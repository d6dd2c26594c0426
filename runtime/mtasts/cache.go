package mtasts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/safeio"
)

// Resolver asks DNS for TXT records; *mailauth.Resolver is one. A lookup
// that finds nothing (NXDOMAIN, NODATA) returns an error matching
// mailauth.ErrNotFound (or a *net.DNSError with IsNotFound).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Config is what a Cache needs from its caller.
type Config struct {
	Resolver Resolver // required
	// TLSConfig gives the roots of trust (RootCAs; nil means the
	// system's). Verification is always on, whatever it says.
	TLSConfig *tls.Config
	// DialContext connects to the policy host; nil means net.Dialer.
	// Tests map mta-sts.<domain> to a server on loopback with it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// FetchTimeout bounds one fetch; 0 means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// File, when set, keeps the cache across restarts (JSON, written
	// whole with safeio after each new policy). A file that cannot be read
	// or parsed is logged and ignored: policies are fetched again.
	File   string
	Logger *slog.Logger     // nil discards
	Now    func() time.Time // nil means time.Now; tests move the clock
}

// Cache discovers, fetches and keeps the policies of destination domains
// (RFC 8461 §5.1). It is safe for concurrent use; concurrent lookups of a
// domain share one fetch.
type Cache struct {
	res  Resolver
	f    *fetcher
	file string
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	entries  map[string]entry // by lower-case domain
	inflight map[string]*fetchCall

	saveMu sync.Mutex // orders the writes of the file
}

// entry is one cached policy.
type entry struct {
	ID      string
	Policy  *Policy
	Expires time.Time
}

// fetchCall is one fetch that concurrent lookups wait for.
type fetchCall struct {
	done chan struct{}
	p    *Policy
	err  error
}

// New returns a cache, loading cfg.File when it exists.
func New(cfg Config) (*Cache, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("mtasts: no resolver")
	}
	c := &Cache{
		res:      cfg.Resolver,
		f:        newFetcher(&cfg),
		file:     cfg.File,
		log:      cfg.Logger,
		now:      cfg.Now,
		entries:  map[string]entry{},
		inflight: map[string]*fetchCall{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.file != "" {
		c.load()
	}
	return c, nil
}

// Close releases idle HTTPS connections.
func (c *Cache) Close() { c.f.close() }

// Lookup returns the policy to apply to mail for domain, nil when the
// domain has none. The error, when not nil, tells what failed (DNS, an
// invalid record, the fetch): the returned policy is still the one to
// apply, since RFC 8461 §5.1 makes such failures fall back to the
// still-valid cached policy, or to none. A domain without an _mta-sts
// record and without a cached policy gives nil, nil.
func (c *Cache) Lookup(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if strings.HasPrefix(domain, "*.") || !validMXPattern(domain) {
		return nil, fmt.Errorf("MTA-STS lookup: invalid domain %q", truncate(domain))
	}
	now := c.now()
	c.mu.Lock()
	cached, ok := c.entries[domain]
	c.mu.Unlock()
	valid := ok && now.Before(cached.Expires)
	fallback := func(err error) (*Policy, error) {
		if valid {
			return cached.Policy, err
		}
		return nil, err
	}

	txts, err := c.res.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if notFound(err) {
			// No record: a cached policy still applies until it
			// expires (RFC 8461 §5.1); a domain cannot drop its policy
			// by removing the record.
			return fallback(nil)
		}
		return fallback(fmt.Errorf("MTA-STS lookup of %s: %w", domain, err))
	}
	rec, err := SelectRecord(txts)
	if err != nil {
		if errors.Is(err, ErrNoRecord) {
			return fallback(nil)
		}
		return fallback(fmt.Errorf("MTA-STS record of %s: %w", domain, err))
	}
	if valid && cached.ID == rec.ID {
		return cached.Policy, nil
	}
	p, err := c.fetchOnce(ctx, domain, rec.ID)
	if err != nil {
		return fallback(err)
	}
	return p, nil
}

// fetchOnce fetches the policy of domain for record id, or waits for the
// fetch another lookup started.
func (c *Cache) fetchOnce(ctx context.Context, domain, id string) (*Policy, error) {
	key := domain + " " + id
	c.mu.Lock()
	call, running := c.inflight[key]
	if !running {
		call = &fetchCall{done: make(chan struct{})}
		c.inflight[key] = call
	}
	c.mu.Unlock()
	if running {
		select {
		case <-call.done:
			return call.p, call.err
		case <-ctx.Done():
			return nil, fmt.Errorf("MTA-STS policy of %s: %w", domain, ctx.Err())
		}
	}

	p, err := c.f.fetch(ctx, domain)
	call.p, call.err = p, err
	c.mu.Lock()
	delete(c.inflight, key)
	if err == nil {
		c.entries[domain] = entry{ID: id, Policy: p, Expires: c.now().Add(p.MaxAge)}
	}
	c.mu.Unlock()
	close(call.done)
	if err != nil {
		return nil, err
	}
	c.log.Info("MTA-STS policy fetched", "domain", domain, "id", id, "mode", string(p.Mode), "max_age", p.MaxAge)
	if c.file != "" {
		if err := c.save(); err != nil {
			c.log.Warn("MTA-STS cache not saved", "err", err)
		}
	}
	return p, nil
}

func notFound(err error) bool {
	if errors.Is(err, mailauth.ErrNotFound) {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// fileEntry is the form of an entry in the cache file; the policy is kept
// in its own syntax, parsed again on load.
type fileEntry struct {
	ID      string    `json:"id"`
	Policy  string    `json:"policy"`
	Expires time.Time `json:"expires"`
}

type cacheFile struct {
	Version int                  `json:"version"`
	Domains map[string]fileEntry `json:"domains"`
}

const cacheFileVersion = 1

// save writes the unexpired entries to the file, dropping the expired
// ones from memory as well. Holding saveMu while taking the snapshot keeps
// an older snapshot from overwriting a newer one.
func (c *Cache) save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	now := c.now()
	out := cacheFile{Version: cacheFileVersion, Domains: map[string]fileEntry{}}
	c.mu.Lock()
	maps.DeleteFunc(c.entries, func(_ string, e entry) bool { return !now.Before(e.Expires) })
	for d, e := range c.entries {
		out.Domains[d] = fileEntry{ID: e.ID, Policy: e.Policy.String(), Expires: e.Expires}
	}
	c.mu.Unlock()
	data, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("save MTA-STS cache: %w", err)
	}
	return safeio.WriteFile(c.file, data, 0o600)
}

// load reads the file; entries that are expired or do not parse are
// skipped.
func (c *Cache) load() {
	data, err := os.ReadFile(c.file)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var in cacheFile
	if err == nil {
		err = json.Unmarshal(data, &in)
	}
	if err == nil && in.Version != cacheFileVersion {
		err = fmt.Errorf("version %d, want %d", in.Version, cacheFileVersion)
	}
	if err != nil {
		c.log.Warn("MTA-STS cache file ignored", "file", c.file, "err", err)
		return
	}
	now := c.now()
	for d, fe := range in.Domains {
		p, err := ParsePolicy(fe.Policy)
		if err != nil || !now.Before(fe.Expires) || fe.ID == "" {
			continue
		}
		c.entries[d] = entry{ID: fe.ID, Policy: p, Expires: fe.Expires}
	}
}
