package dkimsign

import (
	"bufio"
	"bytes"
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
// ending in CRLF) to put before a message when the domain of its From
// (RFC 5322) has keys; nil, nil when it has none, or when the message has
// no From with one domain (several authors of different domains, an
// address that does not parse), or a header over maxHeader: such a
// message is sent unsigned.
//
// Sign calls write once, with the writer to give the message to, as its
// caller stores it (the queue, as it writes the message's file): the
// message is read once, its body canonicalized and hashed once for both
// signatures. An error of write is returned as is.
func (s *Signer) Sign(write func(io.Writer) error) ([]byte, error) {
	m := &message{s: s, d: newDigest()}
	if err := write(m); err != nil {
		return nil, err
	}
	if !m.decided {
		// A message that is all header (RFC 5322 allows it): its body is
		// empty, and the header ends here.
		m.Write([]byte("\r\n\r\n"))
	}
	if m.err != nil || m.keys.Domain == "" {
		return nil, m.err
	}
	sigs, err := m.d.signatures(m.keys, time.Now())
	if err != nil {
		return nil, err
	}
	return []byte(sigs), nil
}

// message is the writer Sign gives: once the header is read, it knows
// whether the message is signed, and hashes the body only if it is.
type message struct {
	s       *Signer
	d       *digest
	decided bool
	keys    Keys // zero: not signed
	err     error
}

func (m *message) Write(p []byte) (int, error) {
	if m.decided && m.keys.Domain == "" {
		return len(p), nil
	}
	m.d.Write(p)
	if !m.decided && (m.d.inBody || m.d.tooLarge) {
		m.decided = true
		m.keys, m.err = m.s.keysFor(m.d)
	}
	return len(p), nil
}

// keysFor returns the keys that sign a message whose header d has read;
// zero Keys when it is not signed.
func (s *Signer) keysFor(d *digest) (Keys, error) {
	if d.tooLarge {
		return Keys{}, nil
	}
	if c := d.header[0]; c == ' ' || c == '\t' {
		// It would continue the last DKIM-Signature field put before it.
		return Keys{}, nil
	}
	domain := fromDomain(d.header)
	if domain == "" {
		return Keys{}, nil
	}
	k, err := s.Keys(domain)
	if errors.Is(err, ErrNoKeys) {
		return Keys{}, nil
	}
	if err != nil {
		return Keys{}, err
	}
	return k, nil
}

// fromDomain returns the lower-case domain of the From's addresses of a
// header (its blank line included); "" when there is no From, one that
// does not parse, addresses of several domains, or a header that is not
// one (a line that is no field).
func fromDomain(header []byte) (domain string) {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(header))).ReadMIMEHeader()
	if err != nil {
		return ""
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return "" // none, or several From fields: not a message to sign
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) == 0 {
		return ""
	}
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return ""
		}
		d := strings.ToLower(a.Address[at+1:])
		if domain != "" && d != domain {
			return ""
		}
		domain = d
	}
	if _, err := normDomain(domain); err != nil {
		return "" // not a name of ours (an IDN in U-labels, a literal)
	}
	return domain
}
