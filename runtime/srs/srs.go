package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The errors Reverse wraps, for errors.Is.
var (
	ErrNotSRS        = errors.New("not an SRS address")
	ErrMalformed     = errors.New("malformed SRS address")
	ErrBadHash       = errors.New("SRS hash does not match (forged or another secret)")
	ErrExpired       = errors.New("SRS address expired")
	ErrForeignDomain = errors.New("SRS address of another domain")
)

const (
	hashLen = 4
	// DefaultMaxAge is how long a bounce to a rewritten sender is
	// accepted, the default of Mail::SRS and postsrsd.
	DefaultMaxAge = 21 * 24 * time.Hour
	day           = 24 * time.Hour
	tickSlots     = 1024 // two base32 characters
	base32Chars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)

// Config is what a Rewriter is made from.
type Config struct {
	// Secrets are the HMAC keys: the first signs, all verify, so that a
	// new secret can be put first while bounces to addresses signed by
	// the old one still come back.
	Secrets [][]byte
	// Domain is the box's domain written after the '@' of every
	// rewritten address, and the only one Reverse accepts.
	Domain string
	// MaxAge is how old a timestamp may be, rounded down to whole days;
	// 0 means DefaultMaxAge. It must stay under 1024 days, the timestamp's cycle.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Rewriter rewrites senders for one domain. It is safe for concurrent use.
type Rewriter struct {
	secrets [][]byte
	domain  string
	maxAge  int // days
	now     func() time.Time
}

// New checks cfg and returns its Rewriter.
func New(cfg Config) (*Rewriter, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("srs: no secret")
	}
	secrets := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		if len(s) == 0 {
			return nil, fmt.Errorf("srs: secret %d is empty", i+1)
		}
		secrets[i] = append([]byte(nil), s...)
	}
	if cfg.Domain == "" || strings.ContainsAny(cfg.Domain, "@=<> \t\r\n") {
		return nil, fmt.Errorf("srs: invalid domain %q", cfg.Domain)
	}
	maxAge := cfg.MaxAge
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if maxAge < day || maxAge >= tickSlots*day {
		return nil, fmt.Errorf("srs: max age %v is not between 1 day and 1023 days", maxAge)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Rewriter{secrets: secrets, domain: cfg.Domain, maxAge: int(maxAge / day), now: now}, nil
}

// Forward returns the sender to use when forwarding a message whose
// reverse path is sender (an address without angle brackets). The empty
// reverse path and a sender of the box's domain come back unchanged; an
// SRS0 or SRS1 address is wrapped as SRS1; any other address becomes SRS0.
func (r *Rewriter) Forward(sender string) (string, error) {
	if sender == "" || sender == "<>" {
		return "", nil
	}
	local, domain, err := splitAddr(sender)
	if err != nil {
		return "", fmt.Errorf("srs: forward %q: %w", sender, err)
	}
	if strings.EqualFold(domain, r.domain) {
		return sender, nil
	}
	if _, rest, ok := cutTag(local, "SRS1"); ok {
		// rest is hash=first-forwarder=srs0-rest (srs0-rest starts with
		// the SRS0 separator): the old hash is dropped and ours is put
		// over the two others. Something that only looks like SRS1 is
		// wrapped as a plain address below.
		if parts := strings.SplitN(rest, "=", 3); len(parts) == 3 && parts[1] != "" && parts[2] != "" && isSep(parts[2][0]) {
			return r.srs1(parts[1], parts[2]), nil
		}
	}
	if sep, rest, ok := cutTag(local, "SRS0"); ok {
		// The SRS0 tag is dropped, its separator kept: the address
		// reversed from the SRS1 one is "SRS0" + sep + rest.
		return r.srs1(domain, sep+rest), nil
	}
	ts := timestamp(r.now())
	h := mac(r.secrets[0], ts, domain, local)
	return "SRS0=" + h + "=" + ts + "=" + domain + "=" + local + "@" + r.domain, nil
}

func (r *Rewriter) srs1(host, user string) string {
	return "SRS1=" + mac(r.secrets[0], host, user) + "=" + host + "=" + user + "@" + r.domain
}

// Reverse returns the address a bounce to addr (without angle brackets)
// goes to: the original sender of an SRS0 address, the first forwarder's
// SRS0 address of an SRS1 one (which has no timestamp of its own: the
// first forwarder checks the age). Its errors wrap ErrNotSRS, ErrForeignDomain, ErrMalformed,
// ErrBadHash or ErrExpired; the bounce should then be refused.
func (r *Rewriter) Reverse(addr string) (string, error) {
	sender, err := r.reverse(addr)
	if err != nil {
		return "", fmt.Errorf("srs: reverse %q: %w", addr, err)
	}
	return sender, nil
}

func (r *Rewriter) reverse(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", ErrNotSRS
	}
	local, domain := addr[:at], addr[at+1:]
	_, rest0, is0 := cutTag(local, "SRS0")
	_, rest1, is1 := cutTag(local, "SRS1")
	if !is0 && !is1 {
		return "", ErrNotSRS
	}
	if !strings.EqualFold(domain, r.domain) {
		return "", ErrForeignDomain
	}
	if is1 {
		parts := strings.SplitN(rest1, "=", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" || !isSep(parts[2][0]) {
			return "", ErrMalformed
		}
		if err := r.verify(parts[0], parts[1], parts[2]); err != nil {
			return "", err
		}
		return "SRS0" + parts[2] + "@" + parts[1], nil
	}
	parts := strings.SplitN(rest0, "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" || !validTimestamp(parts[1]) {
		return "", ErrMalformed
	}
	if err := r.verify(parts[0], parts[1], parts[2], parts[3]); err != nil {
		return "", err
	}
	if age := r.age(parts[1]); age > r.maxAge {
		return "", fmt.Errorf("%w: %d days old, at most %d", ErrExpired, age, r.maxAge)
	}
	return parts[3] + "@" + parts[2], nil
}

// verify checks hash against every secret, exactly first and only then
// without case: a case-insensitive match is weaker, so it is the
// fallback for a local part some system lowercased, not the rule.
func (r *Rewriter) verify(hash string, fields ...string) error {
	if len(hash) != hashLen {
		return ErrMalformed
	}
	valid := make([]string, len(r.secrets))
	for i, s := range r.secrets {
		valid[i] = mac(s, fields...)
		if hmac.Equal([]byte(valid[i]), []byte(hash)) {
			return nil
		}
	}
	for _, v := range valid {
		if hmac.Equal([]byte(asciiLower(v)), []byte(asciiLower(hash))) {
			return nil
		}
	}
	return ErrBadHash
}

// age is how many days ago ts was written; a timestamp from the future
// counts as a whole cycle less a little, so as expired.
func (r *Rewriter) age(ts string) int {
	now := int(r.now().Unix()/86400) % tickSlots
	return ((now-decodeTimestamp(ts))%tickSlots + tickSlots) % tickSlots
}

// mac is the first hashLen characters of the base64 HMAC-SHA1 over the
// fields, each lowercased in ASCII as Mail::SRS does (so bytes of UTF-8
// are hashed as they are).
func mac(secret []byte, fields ...string) string {
	m := hmac.New(sha1.New, secret)
	for _, f := range fields {
		m.Write([]byte(asciiLower(f)))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))[:hashLen]
}

func timestamp(t time.Time) string {
	d := int(t.Unix()/86400) % tickSlots
	if d < 0 {
		d += tickSlots
	}
	return string([]byte{base32Chars[d>>5], base32Chars[d&31]})
}

func validTimestamp(ts string) bool {
	return len(ts) == 2 && strings.IndexByte(base32Chars, upper(ts[0])) >= 0 &&
		strings.IndexByte(base32Chars, upper(ts[1])) >= 0
}

func decodeTimestamp(ts string) int {
	return strings.IndexByte(base32Chars, upper(ts[0]))<<5 | strings.IndexByte(base32Chars, upper(ts[1]))
}

// splitAddr splits a sender at its last '@' and refuses what cannot be
// carried inside an SRS local part.
func splitAddr(addr string) (local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", errors.New("no @ in the address")
	}
	local, domain = addr[:at], addr[at+1:]
	if local == "" || domain == "" {
		return "", "", errors.New("empty local part or domain")
	}
	if strings.HasPrefix(local, `"`) || strings.ContainsAny(local, `@"`) {
		return "", "", errors.New("quoted local part")
	}
	// '=' would move the field boundaries of the SRS address.
	if strings.ContainsAny(domain, "=@") {
		return "", "", errors.New("invalid domain")
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return "", "", fmt.Errorf("invalid character %q", c)
		}
	}
	return local, domain, nil
}

// cutTag reports whether local starts with tag (any case) and one of the
// separators, and returns the separator and the rest.
func cutTag(local, tag string) (sep, rest string, ok bool) {
	if len(local) <= len(tag) || !strings.EqualFold(local[:len(tag)], tag) || !isSep(local[len(tag)]) {
		return "", "", false
	}
	return local[len(tag) : len(tag)+1], local[len(tag)+1:], true
}

func isSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// asciiLower lowercases A-Z only, as Perl's lc does on a byte string;
// strings.ToLower would also fold UTF-8 and hash differently.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
