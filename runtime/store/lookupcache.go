package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// lookupCache keeps the answers of LookupAddress and Domain until the
// database changes. The SMTP server asks for every recipient, and the
// SQLite driver parses a statement again at every query (its prepared
// statements are prepared anew each time): a map read costs a hundredth
// of that. Every write made through this Store empties the cache before
// the write returns. Writes by another process, which should not happen
// while mailfountaind runs (mfapply goes through it), are noticed through
// PRAGMA data_version within checkEvery.
type lookupCache struct {
	mu      sync.Mutex
	gen     uint64 // bumped by every invalidation
	entries map[string]cached

	// What PRAGMA data_version said on conn, a connection kept for it: the
	// number changes when any other connection commits. connMu is held by
	// the one goroutine that reads it; the others go on meanwhile.
	connMu  sync.Mutex
	conn    *sql.Conn
	closed  bool
	version int64
	checked atomic.Int64 // unix nanoseconds of the last reading
}

// cached is one answer: an address, a domain, or an error wrapping
// ErrNotFound (other errors are not kept).
type cached struct {
	addr *Address
	dom  *Domain
	err  error
}

const (
	// checkEvery bounds how long a write by another process goes unseen.
	checkEvery = time.Second
	// maxCached bounds the memory that lookups of names that do not exist
	// (a dictionary attack) can take; the cache starts over past it.
	maxCached = 1 << 16
)

// lookup returns the answer kept for key, or else read's, which is kept
// unless it is an error other than ErrNotFound.
func (c *lookupCache) lookup(ctx context.Context, db *sql.DB, key string, read func() cached) cached {
	c.refresh(ctx, db)
	v, gen, ok := c.get(key)
	if !ok {
		v = read()
		if v.err == nil || errors.Is(v.err, ErrNotFound) {
			c.put(gen, key, v)
		}
	}
	return v
}

// get returns the answer kept for key, and the generation to give put.
func (c *lookupCache) get(key string) (cached, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[key]
	return v, c.gen, ok
}

// put keeps an answer read from the database at generation gen, unless
// the cache was emptied since (the answer may predate the change).
func (c *lookupCache) put(gen uint64, key string, v cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.entries == nil || len(c.entries) >= maxCached {
		c.entries = make(map[string]cached)
	}
	c.entries[key] = v
}

// invalidate forgets every answer.
func (c *lookupCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries = nil
}

// refresh empties the cache if another connection committed since the
// last reading of data_version, at most once per checkEvery. A failed
// reading empties it too: the cache is then only as old as one query.
func (c *lookupCache) refresh(ctx context.Context, db *sql.DB) {
	now := time.Now().UnixNano()
	if now-c.checked.Load() < int64(checkEvery) || !c.connMu.TryLock() {
		return
	}
	defer c.connMu.Unlock()
	if c.closed {
		return
	}
	var v int64
	err := func() error {
		if c.conn == nil {
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			c.conn = conn
		}
		return c.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
	}()
	if err != nil {
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
		c.invalidate()
		return
	}
	if v != c.version {
		c.version = v
		c.invalidate()
	}
	c.checked.Store(now)
}

// close releases the connection kept for data_version.
func (c *lookupCache) close() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// copyAddress returns a copy that the caller may change without changing
// the cached one.
func copyAddress(a *Address) *Address {
	b := *a
	b.Targets = slices.Clone(a.Targets)
	return &b
}
