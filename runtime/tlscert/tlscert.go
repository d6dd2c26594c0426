// Package tlscert owns the certificate the mail servers present: the PEM
// files the state document names, or else a self-signed certificate kept
// in the data directory, made when missing or when it lacks a name the
// box is reached by (a domain was added).
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/safeio"
)

// Files of the self-signed certificate, in DATA/tls.
const (
	SelfSignedCert = "self-signed.crt"
	SelfSignedKey  = "self-signed.key"
)

// Manager picks the certificate for each TLS handshake from the current
// settings, so that a new certificate applies without a restart. Safe for
// concurrent use.
type Manager struct {
	dir  string
	live *mailconf.Live
	log  *slog.Logger

	mu     sync.Mutex
	loaded map[[2]string]loaded // (cert, key) → the files as last loaded
	// making is held while the self-signed certificate is checked and
	// made anew (renew), so that two makers never write a key and a
	// certificate that do not match.
	making sync.Mutex
}

type loaded struct {
	cert    *tls.Certificate
	modCert time.Time
	modKey  time.Time
}

// New returns a manager that keeps its self-signed certificate in
// DATA/tls, making it now if it is missing, and again whenever live gets
// settings with a name it lacks.
func New(dataDir string, live *mailconf.Live, logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{dir: filepath.Join(dataDir, "tls"), live: live, log: logger, loaded: map[[2]string]loaded{}}
	if _, err := m.renew(); err != nil {
		return nil, err
	}
	// New names (a domain added) are in the certificate when the apply
	// that brought them ends, not only at the next handshake: a client
	// that fetches the certificate to trust it then gets the one in use.
	live.OnStore(func(mailconf.Settings) {
		if _, err := m.renew(); err != nil {
			m.log.Error("make the self-signed TLS certificate for new names", "err", err)
		}
	})
	return m, nil
}

// Config is a server TLS configuration whose certificate follows the
// settings: TLS 1.3, which Go picks when the client offers it, or TLS 1.2
// with ECDHE and AEAD suites only, as Mozilla's "intermediate" profile
// (Go's defaults still have CBC suites with SHA-1 MACs). TLS 1.3's suites
// are all AEAD and not configurable.
func (m *Manager) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.Certificate()
		},
	}
}

// Certificate returns the certificate of the current settings: the files
// they name, read again when they change on disk, or the self-signed one.
// When the named files cannot be loaded, it logs why and presents the
// self-signed certificate rather than refusing every client.
func (m *Manager) Certificate() (*tls.Certificate, error) {
	s := m.live.Load()
	if s.TLSCertificate == "" {
		return m.selfSigned()
	}
	c, err := m.load(s.TLSCertificate, s.TLSKey)
	if err != nil {
		m.log.Error("load the TLS certificate; presenting the self-signed one", "err", err)
		return m.selfSigned()
	}
	return c, nil
}

// Check loads a certificate and key pair, as the mail reconciler does
// before it applies them.
func Check(certFile, keyFile string) error {
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return nil
}

// NotAfter reads the end of validity of the first certificate in the PEM
// file certFile: the server's own, before its chain.
func NotAfter(certFile string) (time.Time, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return time.Time{}, fmt.Errorf("read TLS certificate: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return time.Time{}, fmt.Errorf("read TLS certificate %s: no CERTIFICATE block", certFile)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return time.Time{}, fmt.Errorf("read TLS certificate %s: %w", certFile, err)
		}
		return c.NotAfter, nil
	}
}

func (m *Manager) load(certFile, keyFile string) (*tls.Certificate, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key: %w", err)
	}
	k := [2]string{certFile, keyFile}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.loaded[k]; ok && l.modCert.Equal(ci.ModTime()) && l.modKey.Equal(ki.ModTime()) {
		return l.cert, nil
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	clear(m.loaded) // one pair in use at a time
	m.loaded[k] = loaded{cert: &c, modCert: ci.ModTime(), modKey: ki.ModTime()}
	m.log.Info("TLS certificate loaded", "cert", certFile)
	return &c, nil
}

// selfSigned returns the self-signed certificate, making it if missing.
// Its names are checked when the settings change (renew), not at every
// handshake.
func (m *Manager) selfSigned() (*tls.Certificate, error) {
	c, err := m.load(filepath.Join(m.dir, SelfSignedCert), filepath.Join(m.dir, SelfSignedKey))
	if errors.Is(err, fs.ErrNotExist) {
		return m.renew()
	}
	return c, err
}

// renew returns the self-signed certificate, making it if missing or if
// it lacks one of the names clients reach the box by (the settings' host
// name and Names, the loopback names): a new domain, or a new host name,
// gets a certificate that names it.
func (m *Manager) renew() (*tls.Certificate, error) {
	m.making.Lock()
	defer m.making.Unlock()
	certFile, keyFile := filepath.Join(m.dir, SelfSignedCert), filepath.Join(m.dir, SelfSignedKey)
	names := m.selfSignedNames()
	c, err := m.load(certFile, keyFile)
	switch {
	case err == nil:
		missing := lacking(c, names)
		if len(missing) == 0 {
			return c, nil
		}
		m.log.Info("the self-signed TLS certificate lacks names; making a new one", "missing", missing)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if err := generate(m.dir, certFile, keyFile, names); err != nil {
		return nil, err
	}
	// The files may have the modification times of the pair they replace
	// (the clock of file times is coarse): load them again.
	m.mu.Lock()
	delete(m.loaded, [2]string{certFile, keyFile})
	m.mu.Unlock()
	m.log.Info("made a self-signed TLS certificate", "cert", certFile, "names", names)
	return m.load(certFile, keyFile)
}

// selfSignedNames are the DNS names the self-signed certificate carries.
// The loopback addresses are IP addresses, and DNS names too: clients that
// match the host they connect to against the DNS names and the Common
// Name only (RFC 2595's rules; s-nail 14.9) do not see the former.
func (m *Manager) selfSignedNames() []string {
	s := m.live.Load()
	names := []string{"localhost", "127.0.0.1", "::1"}
	if host, _ := os.Hostname(); host != "" {
		names = append(names, host)
	}
	names = append(names, s.Hostname)
	names = append(names, s.Names...)
	for i, n := range names {
		names[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	slices.Sort(names)
	return slices.Compact(slices.DeleteFunc(names, func(n string) bool { return n == "" }))
}

// lacking returns the names of want that c does not carry.
func lacking(c *tls.Certificate, want []string) []string {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return want
		}
	}
	var missing []string
	for _, n := range want {
		if !slices.Contains(leaf.DNSNames, n) {
			missing = append(missing, n)
		}
	}
	return missing
}

// generate writes a self-signed ECDSA P-256 certificate for names, valid
// ten years, the key first, each file complete before it takes its name.
func generate(dir, certFile, keyFile string, names []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make self-signed certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("make self-signed certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "MailFountain", Organization: []string{"MailFountain (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make self-signed certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("make self-signed certificate: %w", err)
	}
	if err := safeio.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return safeio.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
