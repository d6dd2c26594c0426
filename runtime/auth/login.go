package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
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
	// ErrTooManyFailures: the client failed too often lately, for this
	// name or for all (see Limits); it must wait before trying again.
	ErrTooManyFailures = errors.New("too many failed logins")
)

// Results of a login, as Observer hears them.
const (
	LoginOK          = "ok"
	LoginBadPassword = "bad_password" // the account exists; the password does not match, or it has none
	LoginUnknownUser = "unknown_user" // no account has that name (or it is not an address)
	LoginLocked      = "locked"       // refused unchecked: too many failures (ErrTooManyFailures)
	LoginError       = "error"        // not checked: the store failed, or the client left
)

// Observer hears the result of every login, for the daemon's metrics;
// *metrics.Metrics is one. service is Login's; result one of the Login
// constants. The servers' answers never tell a client which result it
// was: only the operator's metrics do.
type Observer interface {
	Login(service, result string)
}

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
//
// Failed logins are counted per client address (IPv6: per /64, as one host
// has many addresses) in two budgets, token buckets that fill up again
// with time: one per account name the client typed, and one for all names
// together. A name whose budget is spent is refused to that address, right
// password or not, while other names still log in from it: an attacker
// guessing one account's password does not lock out the office behind the
// same NAT. An address whose overall budget is spent is refused for every
// name: it stops one address from trying a few passwords on many names.
// Names are counted as typed (case aside), whether they exist or not, so
// that the refusal says nothing about which names exist.
type Limits struct {
	// AccountFailures is how many failed logins a client address may make
	// for one account name before that name is refused to it (default 10).
	AccountFailures int
	// AddressFailures is how many failed logins a client address may make
	// for all names together before it is refused for every name (default
	// 10 × AccountFailures: ten users mistyping their password at once
	// stay far below it, a list of names tried from one place does not).
	AddressFailures int
	// FailureEvery is how often a client address gets back one failure
	// for each name (default 30 s). Its overall budget gets back
	// AddressFailures/AccountFailures failures in that time: both budgets
	// are full again AccountFailures × FailureEvery (5 min) after their
	// last failure.
	FailureEvery time.Duration
	// Hashing bounds the password hashes checked at once: an argon2id
	// check takes 64 MiB and tens of milliseconds.
	Hashing int
	// CacheFor is how long a successful check is remembered, so that a
	// mail client polling every minute costs one hash per CacheFor.
	CacheFor time.Duration
}

const (
	defaultAccountFailures = 10
	// addressFactor is AddressFailures / AccountFailures by default.
	addressFactor       = 10
	defaultFailureEvery = 30 * time.Second
	defaultCacheFor     = 10 * time.Minute
	// maxTracked bounds the entries of each budget map and of the cache.
	maxTracked = 100_000
)

// Authenticator checks the logins of users (full address and password) for
// the mail servers, limits failed attempts (see Limits), bounds the number
// of password hashes checked at once, and records each account's last
// login. Safe for concurrent use.
//
// Every login with a well-formed address costs one password hash check,
// whether the account exists or not: an unknown name, an account without a
// password (it cannot log in) and one whose hash cannot be checked are
// checked against dummy, an argon2id hash with HashPassword's parameters
// that matches no password. The time of the answer then does not tell
// which names exist, as long as the accounts' hashes have HashPassword's
// parameters, as every hash MailFountain makes does. A hash of another
// kind or cost (a bcrypt hash brought from another server) takes its own
// time, which tells that its name exists; setting its password anew
// (mfapply passwd) ends that.
type Authenticator struct {
	accounts Accounts
	log      *slog.Logger
	cacheFor time.Duration // Limits.CacheFor; the others are the budgets'
	now      func() time.Time
	hashing  chan struct{}
	dummy    string
	// checkHash is CheckPassword; tests count its calls.
	checkHash func(hash, password string) bool
	names     maphash.Seed // for the keys of account names
	observer  Observer     // nil: none

	mu       sync.Mutex
	accountB budgets[nameKey]       // per client address and name
	addressB budgets[netip.Prefix]  // per client address
	verified map[[32]byte]time.Time // digest of (domain, id, hash, password) → expiry
}

// nameKey is an account name as a client address typed it; the name is
// hashed so that long names cost no memory.
type nameKey struct {
	client netip.Prefix
	name   uint64
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
	if l.AccountFailures <= 0 {
		l.AccountFailures = defaultAccountFailures
	}
	if l.AddressFailures <= 0 {
		l.AddressFailures = addressFactor * l.AccountFailures
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
	refill := time.Duration(l.AccountFailures) * l.FailureEvery
	return &Authenticator{
		accounts:  st,
		log:       logger,
		cacheFor:  l.CacheFor,
		now:       time.Now,
		hashing:   make(chan struct{}, l.Hashing),
		dummy:     dummyHash(),
		checkHash: CheckPassword,
		names:     maphash.MakeSeed(),
		accountB:  newBudgets[nameKey](l.AccountFailures, refill),
		addressB:  newBudgets[netip.Prefix](l.AddressFailures, refill),
		verified:  make(map[[32]byte]time.Time),
	}
}

// Observe makes o hear the result of every login; call it before the
// Authenticator is used.
func (a *Authenticator) Observe(o Observer) *Authenticator {
	a.observer = o
	return a
}

// Login checks address (local@domain, case-insensitive; the full address is
// required, manual 6.4.2) and password for service ("smtp", "pop3",
// "imap", "web") from client remote. It returns ErrBadCredentials or
// ErrTooManyFailures, wrapped.
func (a *Authenticator) Login(ctx context.Context, service string, remote netip.Addr, address, password string) (*Principal, error) {
	client := clientKey(remote)
	name := nameKey{client: client, name: maphash.String(a.names, strings.ToLower(address))}
	p, spent, result, err := a.check(ctx, client, name, address, password)
	if a.observer != nil {
		a.observer.Login(service, result)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrTooManyFailures):
			a.log.Warn("login refused: too many failures", "service", service, "remote", remote.String(), "user", printable(address))
		case errors.Is(err, ErrBadCredentials):
			a.log.Info("login failed", "service", service, "remote", remote.String(), "user", printable(address))
		}
		return nil, fmt.Errorf("login %s from %s: %w", service, remote, err)
	}
	a.succeeded(client, name, spent)
	// The login stands even if it cannot be recorded.
	if err := a.accounts.RecordLogin(context.WithoutCancel(ctx), p.Domain, p.Account, service, a.now()); err != nil {
		a.log.Warn("record login", "err", err)
	}
	a.log.Info("login", "service", service, "remote", remote.String(), "user", p.Address)
	return p, nil
}

// check checks the password of address; every well-formed address costs
// one hash check (see Authenticator). A name or client whose budget is
// spent is refused, right password or not; spent says whether the attempt
// spent a failure of the budgets of client and name (see take); result is
// one of the Login constants.
func (a *Authenticator) check(ctx context.Context, client netip.Prefix, name nameKey, address, password string) (p *Principal, spent bool, result string, err error) {
	if !a.allowed(client, name) {
		return nil, false, LoginLocked, ErrTooManyFailures
	}
	local, domain, ok := strings.Cut(address, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(address) > 320 {
		// No account has such a name: the quick answer tells nothing.
		if !a.take(client, name) {
			return nil, false, LoginLocked, ErrTooManyFailures
		}
		return nil, true, LoginUnknownUser, ErrBadCredentials
	}
	local, domain = strings.ToLower(local), strings.ToLower(domain)
	acct, err := a.accounts.Account(ctx, domain, local)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, false, LoginError, fmt.Errorf("read account: %w", err)
	}
	failure := LoginBadPassword
	if err != nil {
		failure = LoginUnknownUser
	}
	checkable := err == nil && ValidateHash(acct.PasswordHash) == nil
	if !checkable {
		acct = &store.Account{Domain: domain, ID: local, PasswordHash: a.dummy}
	}
	// The dummy's key is never remembered: its lookup misses, as a
	// wrong password's does.
	key := verifiedKey(acct, password)
	if a.cached(key) {
		return principal(acct), false, LoginOK, nil
	}
	select {
	case a.hashing <- struct{}{}:
	case <-ctx.Done():
		return nil, false, LoginError, ctx.Err()
	}
	defer func() { <-a.hashing }()
	if !a.take(client, name) {
		return nil, false, LoginLocked, ErrTooManyFailures
	}
	if !a.checkHash(acct.PasswordHash, password) || !checkable {
		return nil, true, failure, ErrBadCredentials
	}
	a.remember(key)
	return principal(acct), true, LoginOK, nil
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
	a.verified[k] = now.Add(a.cacheFor)
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

// allowed reports whether client and name have a failure left in their
// budgets.
func (a *Authenticator) allowed(client netip.Prefix, name nameKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	return a.addressB.tokens(client, now) >= 1 && a.accountB.tokens(name, now) >= 1
}

// take spends a failure of both budgets just before a hash is checked,
// or reports that one is spent: spending first keeps parallel attempts
// from going past a budget, and spending only then (Hashing attempts at
// once) keeps logins made at once, more than a budget holds, from being
// refused for failures none of them made. succeeded returns it.
func (a *Authenticator) take(client netip.Prefix, name nameKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.addressB.tokens(client, now) < 1 || a.accountB.tokens(name, now) < 1 {
		return false
	}
	a.addressB.spend(client, now)
	a.accountB.spend(name, now)
	return true
}

// succeeded returns the failure take spent, if it did, for a login that
// succeeded, and forgets the name's past failures from that client; not
// the address's (a client could otherwise reset them with an account of
// its own).
func (a *Authenticator) succeeded(client netip.Prefix, name nameKey, spent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if spent {
		a.addressB.refund(client, a.now())
	}
	delete(a.accountB.m, name)
}

// budgets are failure budgets by key, token buckets of burst tokens that
// get one back every `every`; a key without an entry has a full budget.
// The caller holds the Authenticator's lock.
type budgets[K comparable] struct {
	burst float64
	every time.Duration
	max   int // entries at most
	m     map[K]bucket
}

// bucket is a budget's tokens at a time.
type bucket struct {
	tokens float64
	at     time.Time
}

// newBudgets returns budgets of burst failures, full again refill after
// the last one.
func newBudgets[K comparable](burst int, refill time.Duration) budgets[K] {
	every := max(time.Nanosecond, refill/time.Duration(burst))
	return budgets[K]{burst: float64(burst), every: every, max: maxTracked, m: make(map[K]bucket)}
}

// level returns b's tokens at now.
func (bs *budgets[K]) level(b bucket, now time.Time) float64 {
	return min(bs.burst, b.tokens+float64(now.Sub(b.at))/float64(bs.every))
}

func (bs *budgets[K]) tokens(k K, now time.Time) float64 {
	b, ok := bs.m[k]
	if !ok {
		return bs.burst
	}
	return bs.level(b, now)
}

func (bs *budgets[K]) spend(k K, now time.Time) {
	t := bs.tokens(k, now)
	if _, ok := bs.m[k]; !ok && len(bs.m) >= bs.max {
		bs.makeRoom(now)
	}
	bs.m[k] = bucket{tokens: max(0, t-1), at: now}
}

// refund gives a token back, and forgets a budget that is full again.
func (bs *budgets[K]) refund(k K, now time.Time) {
	b, ok := bs.m[k]
	if !ok {
		return
	}
	t := bs.level(b, now) + 1
	if t >= bs.burst {
		delete(bs.m, k)
		return
	}
	bs.m[k] = bucket{tokens: t, at: now}
}

// makeRoom forgets the budgets that are full again and, if that is not
// enough, the fullest ones down to three quarters of max: memory stays
// bounded under a spray of addresses or names, and the budgets spent
// (the names locked) are the last to go, so that a locked name cannot be
// freed by filling the map.
func (bs *budgets[K]) makeRoom(now time.Time) {
	for k, b := range bs.m {
		if bs.level(b, now) >= bs.burst {
			delete(bs.m, k)
		}
	}
	keep := bs.max * 3 / 4
	if len(bs.m) <= keep {
		return
	}
	levels := make([]float64, 0, len(bs.m))
	for _, b := range bs.m {
		levels = append(levels, bs.level(b, now))
	}
	slices.Sort(levels)
	limit := levels[keep]
	// Those above the limit first, then as many at it as needed.
	for _, above := range []bool{true, false} {
		for k, b := range bs.m {
			if len(bs.m) <= keep {
				return
			}
			if l := bs.level(b, now); l > limit || (!above && l == limit) {
				delete(bs.m, k)
			}
		}
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
