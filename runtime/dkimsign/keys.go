// Package dkimsign owns the DKIM keys of the box's domains and signs the
// box's outgoing mail with them (RFC 6376, with ed25519-sha256 of RFC 8463
// beside rsa-sha256, as RFC 8463 advises: a verifier that knows only RSA
// still finds a signature it can check).
//
// Keys live in a directory of the data directory (DATA/dkim), one
// directory per domain, one PEM file (PKCS #8, mode 0600) per key:
//
//	DATA/dkim/example.com/mf20261204e.key   ed25519
//	DATA/dkim/example.com/mf20261204r.key   RSA-2048
//
// The file's name is the selector: "mf", the UTC date the key was made
// (YYYYMMDD), then "e" for ed25519 or "r" for RSA. The keys of one date are
// a pair; the newest complete pair signs. A rotation (Rotate) adds the
// pair of a later date, which signs from then on: its caller publishes the
// new records (in Records as soon as Rotate returns) before it hands the
// new Keys to the signer. The older pairs stay on disk and in Records, so
// that mail signed before the rotation still verifies while it is in
// transit, until the caller removes them (Remove). One rotation a day at
// most: the date is the whole selector.
//
// Signing reads the message twice (Sign) or once (Signatures, and
// Signer.Sign as its caller writes the message), never holding more than
// its header in memory. The signer is this package's own (RFC 6376
// relaxed/relaxed, RFC 8463): the body is canonicalized and hashed once
// for both signatures, which share SHA-256, in the caller's goroutine. The functions keep no state
// between calls: the keys are read from disk by Ensure or Load, and a
// caller keeps the Keys it signs with. A Signer (the outbound queue's)
// signs a message with the keys of its From's domain, and keeps the keys
// it read until their directory changes, which one stat per message
// tells. Ensure, Rotate and Remove of one
// domain are meant for one owner (the mail reconciler): two processes
// making the same domain's keys at once could each sign with a key the
// other replaced. What to sign, when to rotate and publishing the records
// in DNS are the caller's business.
package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// RSABits is the size of the RSA keys made.
const RSABits = 2048

// Algorithm names, as in the k= tag of a DKIM key record.
const (
	Ed25519 = "ed25519"
	RSA     = "rsa"
)

// ErrNoKeys is returned by Load for a domain without a complete pair.
var ErrNoKeys = errors.New("dkimsign: no DKIM keys")

// Key is one private key and its selector.
type Key struct {
	Selector  string // e.g. mf20261204e
	Algorithm string // Ed25519 or RSA
	Signer    crypto.Signer
}

// Keys are the keys of one domain on disk.
type Keys struct {
	Domain string // lower case
	// Ed25519 and RSA are the newest complete pair: the keys that sign.
	Ed25519, RSA Key
	// Older are the keys of earlier dates still on disk: still published,
	// no longer used to sign. Newest first.
	Older []Key
}

// TXT is one DNS TXT record to publish.
type TXT struct {
	Name string // <selector>._domainkey.<domain>, without a final dot
	// Strings are the record's character-strings, each at most 255
	// bytes; a verifier joins them.
	Strings []string
}

// Value is the record's text, its strings joined.
func (t TXT) Value() string { return strings.Join(t.Strings, "") }

// String is the record in zone file syntax.
func (t TXT) String() string {
	var b strings.Builder
	b.WriteString(t.Name)
	b.WriteString(". IN TXT")
	for _, s := range t.Strings {
		b.WriteString(` "`)
		b.WriteString(s) // base64 and tags: nothing to escape
		b.WriteString(`"`)
	}
	return b.String()
}

// Records are the DNS TXT records of every key on disk, the signing pair
// first (ed25519, then RSA), then the older ones.
func (k Keys) Records() ([]TXT, error) {
	all := append([]Key{k.Ed25519, k.RSA}, k.Older...)
	out := make([]TXT, 0, len(all))
	for _, key := range all {
		pub, err := x509.MarshalPKIXPublicKey(key.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("dkim record of %s: %w", key.Selector, err)
		}
		if key.Algorithm == Ed25519 {
			// RFC 8463: the raw 32-byte key, not a SubjectPublicKeyInfo.
			pub = key.Signer.Public().(ed25519.PublicKey)
		}
		text := "v=DKIM1; k=" + key.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(pub)
		out = append(out, TXT{Name: key.Selector + "._domainkey." + k.Domain, Strings: SplitTXT(text)})
	}
	return out, nil
}

// SplitTXT cuts s in DNS character-strings (255 bytes at most each), as
// a TXT record longer than 255 bytes must be written.
func SplitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// Ensure returns the keys of domain under dir, making the pair dated now
// when the domain has none (or completing a pair a crash left half made).
func Ensure(dir, domain string, now time.Time) (Keys, error) {
	k, err := Load(dir, domain)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, ErrNoKeys) {
		return Keys{}, err
	}
	// A lone key of the newest date is kept and its pair made: a crash
	// between the two writes must not leave a key never published.
	date := dateTag(now)
	if lone, lerr := newestDate(dir, domain); lerr == nil && lone != "" {
		date = lone
	}
	if err := makePair(dir, domain, date); err != nil {
		return Keys{}, err
	}
	return Load(dir, domain)
}

// Rotate makes the pair dated now, which signs from then on; the older
// pairs stay published until Remove. The domain must already have keys
// of an earlier date.
func Rotate(dir, domain string, now time.Time) (Keys, error) {
	k, err := Load(dir, domain)
	if err != nil {
		return Keys{}, err
	}
	date := dateTag(now)
	if cur := strings.TrimSuffix(k.Ed25519.Selector, "e"); date <= cur {
		return Keys{}, fmt.Errorf("rotate dkim keys of %s: the newest keys (%s) are not older than %s", k.Domain, cur, date)
	}
	if err := makePair(dir, k.Domain, date); err != nil {
		return Keys{}, err
	}
	return Load(dir, domain)
}

// Remove deletes the pair of an older date, named by either of its
// selectors or by their common part (mf20261204). The signing pair cannot
// be removed.
func Remove(dir, domain, selector string) error {
	k, err := Load(dir, domain)
	if err != nil {
		return err
	}
	date := strings.TrimRight(selector, "er")
	if _, ok := parseDate(date); !ok {
		return fmt.Errorf("remove dkim keys of %s: %q is not a selector", k.Domain, selector)
	}
	if date == strings.TrimSuffix(k.Ed25519.Selector, "e") {
		return fmt.Errorf("remove dkim keys of %s: %s are the keys that sign", k.Domain, date)
	}
	ddir := filepath.Join(dir, k.Domain)
	found := false
	for _, suf := range []string{"e", "r"} {
		err := os.Remove(filepath.Join(ddir, date+suf+".key"))
		if err == nil {
			found = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove dkim keys of %s: %w", k.Domain, err)
		}
	}
	if !found {
		return fmt.Errorf("remove dkim keys of %s: no keys %s", k.Domain, date)
	}
	if err := safeio.SyncDir(ddir); err != nil {
		return fmt.Errorf("remove dkim keys of %s: %w", k.Domain, err)
	}
	return nil
}

// Load reads the keys of domain under dir without making any: ErrNoKeys
// when there is no complete pair.
func Load(dir, domain string) (Keys, error) {
	domain, err := normDomain(domain)
	if err != nil {
		return Keys{}, err
	}
	ddir := filepath.Join(dir, domain)
	ents, err := os.ReadDir(ddir)
	if errors.Is(err, fs.ErrNotExist) {
		return Keys{}, fmt.Errorf("%w for %s", ErrNoKeys, domain)
	}
	if err != nil {
		return Keys{}, fmt.Errorf("load dkim keys of %s: %w", domain, err)
	}
	have := map[string]bool{}
	var names []string
	for _, e := range ents {
		if sel, ok := strings.CutSuffix(e.Name(), ".key"); ok && validSelector(sel) {
			have[sel] = true
			names = append(names, sel)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names))) // newest date first
	k := Keys{Domain: domain}
	for _, sel := range names {
		key, err := readKey(filepath.Join(ddir, sel+".key"), sel)
		if err != nil {
			return Keys{}, fmt.Errorf("load dkim keys of %s: %w", domain, err)
		}
		date := sel[:len(sel)-1]
		if k.Ed25519.Signer == nil && have[date+"e"] && have[date+"r"] {
			if key.Algorithm == Ed25519 {
				k.Ed25519 = key
			} else {
				k.RSA = key
			}
			continue
		}
		k.Older = append(k.Older, key)
	}
	if k.Ed25519.Signer == nil {
		return Keys{}, fmt.Errorf("%w for %s", ErrNoKeys, domain)
	}
	return k, nil
}

// newestDate is the date of the newest key file of domain, complete pair
// or not; "" when there is none.
func newestDate(dir, domain string) (string, error) {
	domain, err := normDomain(domain)
	if err != nil {
		return "", err
	}
	ents, err := os.ReadDir(filepath.Join(dir, domain))
	if err != nil {
		return "", err
	}
	newest := ""
	for _, e := range ents {
		if sel, ok := strings.CutSuffix(e.Name(), ".key"); ok && validSelector(sel) && sel[:len(sel)-1] > newest {
			newest = sel[:len(sel)-1]
		}
	}
	return newest, nil
}

// readKey reads one PEM key file, refusing one others may read.
func readKey(path, sel string) (Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Key{}, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Key{}, fmt.Errorf("%s: mode %v, others may read the private key (want 0600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Key{}, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	key := Key{Selector: sel}
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		key.Algorithm, key.Signer = Ed25519, p
	case *rsa.PrivateKey:
		key.Algorithm, key.Signer = RSA, p
	default:
		return Key{}, fmt.Errorf("%s: unsupported key type %T", path, priv)
	}
	if want := map[byte]string{'e': Ed25519, 'r': RSA}[sel[len(sel)-1]]; key.Algorithm != want {
		return Key{}, fmt.Errorf("%s: a %s key under a %s selector", path, key.Algorithm, want)
	}
	return key, nil
}

// makePair writes the keys of date that are missing.
func makePair(dir, domain, date string) error {
	domain, err := normDomain(domain)
	if err != nil {
		return err
	}
	ddir := filepath.Join(dir, domain)
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return fmt.Errorf("make dkim keys of %s: %w", domain, err)
	}
	for _, suf := range []string{"e", "r"} {
		path := filepath.Join(ddir, date+suf+".key")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		var priv any
		if suf == "e" {
			_, priv, err = ed25519.GenerateKey(rand.Reader)
		} else {
			priv, err = rsa.GenerateKey(rand.Reader, RSABits)
		}
		if err != nil {
			return fmt.Errorf("make dkim key %s of %s: %w", date+suf, domain, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return fmt.Errorf("make dkim key %s of %s: %w", date+suf, domain, err)
		}
		if err := safeio.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return fmt.Errorf("make dkim key of %s: %w", domain, err)
		}
	}
	if err := safeio.SyncDir(ddir); err != nil {
		return fmt.Errorf("make dkim keys of %s: %w", domain, err)
	}
	return nil
}

// dateTag is the selector's stem for a key made at t: mf and the UTC date.
func dateTag(t time.Time) string { return "mf" + t.UTC().Format("20060102") }

// parseDate reads a selector's stem (mf20261204).
func parseDate(stem string) (time.Time, bool) {
	d, ok := strings.CutPrefix(stem, "mf")
	if !ok || len(d) != 8 {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102", d)
	return t, err == nil
}

// validSelector is true for the selectors this package makes.
func validSelector(sel string) bool {
	if len(sel) != 11 || (sel[10] != 'e' && sel[10] != 'r') {
		return false
	}
	_, ok := parseDate(sel[:10])
	return ok
}

// normDomain lower-cases a domain and checks it is a DNS name (A-labels),
// since it names a directory.
func normDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	bad := d == "" || len(d) > 253
	for _, label := range strings.Split(d, ".") {
		if bad {
			break
		}
		bad = label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-'
		for i := 0; i < len(label) && !bad; i++ {
			c := label[i]
			bad = !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')
		}
	}
	if bad {
		return "", fmt.Errorf("dkimsign: %q is not a domain name", d)
	}
	return d, nil
}
