package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/store"
)

// Errors of Login.
var (
	// ErrBadCredentials: unknown address, account without password, or
	// wrong password. Servers must not say which.
	ErrBadCredentials = errors.New("invalid credentials")
	// ErrTooManyFailures: the client failed too often lately; it must
	// wait before trying again.
	ErrTooManyFailures = errors.New("too many failed logins")
)

// Principal is who logged in.
type Principal struct {
	Domain  string
	Account string // the account's id
	Address string // Account@Domain
}

// Accounts is what Authenticator needs of the store.
type Accounts interface {
	Account(ctx context.Context, domain, id string) (*store.Account, error)
	RecordLogin(ctx context.Context, domain, id, service string, at time.Time) error
}

// Limits of an Authenticator; the zero value of a field means its default.
type Limits struct {
	// Failures a client address may make before it is refused (burst),
	// and how often one more is allowed again.
	Failures     int
	FailureEvery time.Duration
	// Hashing bounds the password hashes checked at once: an argon2id
	// check takes 64 MiB and tens of milliseconds.
	Hashing int
	// CacheFor is how long a successful check is remembered, so that a
	// mail client polling every minute costs one hash per CacheFor.
	CacheFor time.Duration
}

const (
	defaultFailures     = 10
	defaultFailureEvery = 30 * time.Second
	defaultCacheFor     = 10 * time.Minute
	// maxTracked bounds the memory of the limiter and of the cache.
	maxTracked = 100_000
)

// Authenticator checks the logins of users (full address and password) for
// the mail servers, limits failed attempts per client address, bounds the
// number of password hashes checked at once, and records each account's
// last login. Safe for concurrent use.
type Authenticator struct {
	accounts Accounts
	log      *slog.Logger
	limits   Limits
	now      func() time.Time
	hashing  chan struct{}

	mu       sync.Mutex
	failures map[netip.Prefix]*bucket
	verified map[[32]byte]time.Time // digest of (domain, id, hash, password) → expiry
}

// bucket is a client's failure budget: tokens refill one per FailureEvery.
type bucket struct {
	tokens float64
	at     time.Time
}

// NewAuthenticator returns an authenticator over the accounts of st.
func NewAuthenticator(st Accounts, logger *slog.Logger) *Authenticator {
	return NewAuthenticatorLimits(st, logger, Limits{})
}

// NewAuthenticatorLimits is NewAuthenticator with limits other than the
// defaults.
func NewAuthenticatorLimits(st Accounts, logger *slog.Logger, l Limits) *Authenticator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if l.Failures <= 0 {
		l.Failures = defaultFailures
	}
	if l.FailureEvery <= 0 {
		l.FailureEvery = defaultFailureEvery
	}
	if l.Hashing <= 0 {
		l.Hashing = max(2, runtime.NumCPU())
	}
	if l.CacheFor <= 0 {
		l.CacheFor = defaultCacheFor
	}
	return &Authenticator{
		accounts: st,
		log:      logger,
		limits:   l,
		now:      time.Now,
		hashing:  make(chan struct{}, l.Hashing),
		failures: make(map[netip.Prefix]*bucket),
		verified: make(map[[32]byte]time.Time),
	}
}

// Login checks address (local@domain, case-insensitive; the full address is
// required, manual 6.4.2) and password for service ("smtp", "pop3",
// "imap", "web") from client remote. It returns ErrBadCredentials or
// ErrTooManyFailures, wrapped.
func (a *Authenticator) Login(ctx context.Context, service string, remote netip.Addr, address, password string) (*Principal, error) {
	client := clientKey(remote)
	if !a.allowed(client) {
		a.log.Warn("login refused: too many failures", "service", service, "remote", remote.String())
		return nil, fmt.Errorf("login %s from %s: %w", service, remote, ErrTooManyFailures)
	}
	p, err := a.check(ctx, address, password)
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			a.fail(client)
			a.log.Info("login failed", "service", service, "remote", remote.String(), "user", printable(address))
		}
		return nil, fmt.Errorf("login %s from %s: %w", service, remote, err)
	}
	// The login stands even if it cannot be recorded.
	if err := a.accounts.RecordLogin(context.WithoutCancel(ctx), p.Domain, p.Account, service, a.now()); err != nil {
		a.log.Warn("record login", "err", err)
	}
	a.log.Info("login", "service", service, "remote", remote.String(), "user", p.Address)
	return p, nil
}

func (a *Authenticator) check(ctx context.Context, address, password string) (*Principal, error) {
	local, domain, ok := strings.Cut(address, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(address) > 320 {
		return nil, ErrBadCredentials
	}
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	acct, err := a.accounts.Account(ctx, domain, local)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("read account: %w", err)
	}
	if acct.PasswordHash == "" {
		return nil, ErrBadCredentials
	}
	key := verifiedKey(acct, password)
	if a.cached(key) {
		return principal(acct), nil
	}
	select {
	case a.hashing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ok = CheckPassword(acct.PasswordHash, password)
	<-a.hashing
	if !ok {
		return nil, ErrBadCredentials
	}
	a.remember(key)
	return principal(acct), nil
}

func principal(acct *store.Account) *Principal {
	return &Principal{Domain: acct.Domain, Account: acct.ID, Address: acct.ID + "@" + acct.Domain}
}

// verifiedKey identifies a successful check; a new password hash makes a
// new key, so a password change takes effect at once.
func verifiedKey(acct *store.Account, password string) [32]byte {
	h := sha256.New()
	for _, s := range []string{acct.Domain, acct.ID, acct.PasswordHash, password} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (a *Authenticator) cached(k [32]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.verified[k]
	if ok && a.now().After(exp) {
		delete(a.verified, k)
		return false
	}
	return ok
}

func (a *Authenticator) remember(k [32]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if len(a.verified) >= maxTracked {
		for k, exp := range a.verified {
			if now.After(exp) {
				delete(a.verified, k)
			}
		}
		if len(a.verified) >= maxTracked {
			clear(a.verified)
		}
	}
	a.verified[k] = now.Add(a.limits.CacheFor)
}

// clientKey groups IPv6 clients by /64: one host has many addresses.
func clientKey(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := addr.BitLen()
	if addr.Is6() {
		bits = 64
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// refill returns b's tokens at now.
func (a *Authenticator) refill(b *bucket, now time.Time) float64 {
	t := b.tokens + float64(now.Sub(b.at))/float64(a.limits.FailureEvery)
	return min(t, float64(a.limits.Failures))
}

func (a *Authenticator) allowed(client netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.failures[client]
	if !ok {
		return true
	}
	return a.refill(b, a.now()) >= 1
}

func (a *Authenticator) fail(client netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	b, ok := a.failures[client]
	if !ok {
		if len(a.failures) >= maxTracked {
			a.pruneFailures(now)
		}
		b = &bucket{tokens: float64(a.limits.Failures), at: now}
		a.failures[client] = b
	}
	b.tokens = max(0, a.refill(b, now)-1)
	b.at = now
}

// pruneFailures forgets clients whose budget is full again, and everyone
// if that is not enough: memory stays bounded under a spray of addresses.
func (a *Authenticator) pruneFailures(now time.Time) {
	for k, b := range a.failures {
		if a.refill(b, now) >= float64(a.limits.Failures) {
			delete(a.failures, k)
		}
	}
	if len(a.failures) >= maxTracked {
		clear(a.failures)
	}
}

// printable bounds and cleans a client-given user name for the log.
func printable(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
