package dkimsign

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DirName is the keys' directory in the data directory.
const DirName = "dkim"

// Dir is the keys' directory of the data directory dataDir (DATA/dkim).
func Dir(dataDir string) string { return filepath.Join(dataDir, DirName) }

// maxHeader bounds what Signer.Sign reads looking for From: a header
// larger than this is not signed.
const maxHeader = 1 << 20

// racyWindow is how recent a key directory's modification time must be
// for its cached keys not to be trusted: a file added within one tick of
// the file system's clock (coarse, a few milliseconds on Linux) after
// the keys were read leaves the time unchanged.
const racyWindow = 2 * time.Second

// Signer signs messages with the keys of the domain of their From, read
// from a keys directory (Dir) and cached: the keys of a domain are read
// again when its directory changed (a rotation, a pair Ensure made), which
// a stat of the directory tells. Safe for concurrent use.
type Signer struct {
	dir string

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	mod  time.Time
	keys Keys
	err  error // ErrNoKeys (a half-made pair), or why they did not load
}

// NewSigner returns a Signer of the keys under dir (Dir of the data
// directory).
func NewSigner(dir string) *Signer {
	return &Signer{dir: dir, cache: map[string]cached{}}
}

// Keys returns the keys of domain, from the cache when its directory has
// not changed since they were read: ErrNoKeys when it has none.
func (s *Signer) Keys(domain string) (Keys, error) {
	domain, err := normDomain(domain)
	if err != nil {
		return Keys{}, err
	}
	fi, err := os.Stat(filepath.Join(s.dir, domain))
	if errors.Is(err, fs.ErrNotExist) {
		return Keys{}, fmt.Errorf("%w for %s", ErrNoKeys, domain)
	}
	if err != nil {
		return Keys{}, fmt.Errorf("dkim keys of %s: %w", domain, err)
	}
	mod := fi.ModTime()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[domain]; ok && c.mod.Equal(mod) && time.Since(mod) > racyWindow {
		return c.keys, c.err
	}
	k, err := Load(s.dir, domain)
	s.cache[domain] = cached{mod: mod, keys: k, err: err}
	return k, err
}

// Sign returns the DKIM-Signature header fields (ed25519, then RSA, each
// ending in CRLF) to put before msg when the domain of its From (RFC 5322)
// has keys; nil, nil when it has none, or when msg has no From with one
// domain (several authors of different domains, an address that does not
// parse): such a message is sent unsigned. msg is read from its current
// offset, and left there.
func (s *Signer) Sign(msg io.ReadSeeker) (fields []byte, err error) {
	start, err := msg.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("dkim sign: %w", err)
	}
	defer func() {
		if _, serr := msg.Seek(start, io.SeekStart); serr != nil && err == nil {
			fields, err = nil, fmt.Errorf("dkim sign: %w", serr)
		}
	}()
	domain, complete, err := fromDomain(msg)
	if err != nil || domain == "" {
		return nil, err
	}
	k, err := s.Keys(domain)
	if errors.Is(err, ErrNoKeys) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := msg.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("dkim sign: %w", err)
	}
	var r io.Reader = msg
	if !complete {
		// A message that is all header (RFC 5322 allows it): the signer
		// needs the end of the header; the body is empty either way.
		r = io.MultiReader(msg, strings.NewReader("\r\n\r\n"))
	}
	sigs, err := Signatures(r, k)
	if err != nil {
		return nil, err
	}
	return []byte(sigs), nil
}

// fromDomain reads the header of msg and returns the lower-case domain of
// its From's addresses; "" when there is no From, one that does not parse,
// addresses of several domains, or a header that is not one (a line that
// is no field). complete is false when the message ends in its header.
// Only an error reading msg is an error.
func fromDomain(msg io.Reader) (domain string, complete bool, err error) {
	h, err := textproto.NewReader(bufio.NewReader(io.LimitReader(msg, maxHeader))).ReadMIMEHeader()
	switch {
	case err == nil:
		complete = true
	case errors.Is(err, io.EOF):
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, new(textproto.ProtocolError)):
		return "", false, nil
	default:
		return "", false, fmt.Errorf("dkim sign: reading the header: %w", err)
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", false, nil // none, or several From fields: not a message to sign
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) == 0 {
		return "", false, nil
	}
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", false, nil
		}
		d := strings.ToLower(a.Address[at+1:])
		if domain != "" && d != domain {
			return "", false, nil
		}
		domain = d
	}
	if _, err := normDomain(domain); err != nil {
		return "", false, nil // not a name of ours (an IDN in U-labels, a literal)
	}
	return domain, complete, nil
}
