package tlscert

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailconf"
)

func TestSelfSignedKeptAndFilesFollowSettings(t *testing.T) {
	dir := t.TempDir()
	var live mailconf.Live
	m, err := New(dir, &live, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tls", SelfSignedKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// A restart keeps the same certificate.
	m2, err := New(dir, &live, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m2.Certificate()
	if string(again.Certificate[0]) != string(first.Certificate[0]) {
		t.Fatal("a new manager made a new self-signed certificate")
	}

	// Named files replace it, and a broken pair falls back to it.
	other := t.TempDir()
	if err := generate(other, filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem"), []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := Check(filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem")); err != nil {
		t.Fatal(err)
	}
	s := mailconf.Default()
	s.TLSCertificate, s.TLSKey = filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem")
	live.Store(s)
	got, err := m.Config().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Certificate[0]) == string(first.Certificate[0]) {
		t.Fatal("the named certificate is not used")
	}
	s.TLSKey = filepath.Join(other, "missing.pem")
	live.Store(s)
	got, err = m.Certificate()
	if err != nil || string(got.Certificate[0]) != string(first.Certificate[0]) {
		t.Fatalf("broken pair: %v, want the self-signed certificate", err)
	}
	if err := Check(s.TLSCertificate, s.TLSKey); err == nil {
		t.Fatal("Check accepted a missing key")
	}
}

// rsaPair writes an RSA certificate and key, as a document's files may
// be, and returns their paths.
func rsaPair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.ma-societe.fr"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"mail.ma-societe.fr"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "rsa.crt"), filepath.Join(dir, "rsa.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// handshake runs a TLS handshake between client and the server
// configuration over a pipe; the version and suite agreed.
func handshake(server, client *tls.Config) (uint16, uint16, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	srv := tls.Server(a, server)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	c := tls.Client(b, client)
	err := c.Handshake()
	if err != nil {
		b.Close() // the server may wait for a record
	}
	if serr := <-done; err == nil {
		err = serr
	}
	st := c.ConnectionState()
	return st.Version, st.CipherSuite, err
}

// TestCipherSuites offers the server each TLS 1.2 suite Go knows, alone:
// only the ECDHE AEAD suites of the certificate's key type are accepted,
// for the self-signed certificate (ECDSA) and for an RSA one from the
// document's files. TLS 1.3 is chosen when offered, TLS 1.1 refused.
func TestCipherSuites(t *testing.T) {
	var live mailconf.Live
	m, err := New(t.TempDir(), &live, nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := rsaPair(t)
	var suites []*tls.CipherSuite
	suites = append(suites, tls.CipherSuites()...)
	suites = append(suites, tls.InsecureCipherSuites()...)
	for _, key := range []string{"ECDSA", "RSA"} {
		s := mailconf.Default()
		if key == "RSA" {
			s.TLSCertificate, s.TLSKey = certFile, keyFile
		}
		live.Store(s)
		for _, cs := range suites {
			if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
				continue
			}
			want := strings.HasPrefix(cs.Name, "TLS_ECDHE_"+key+"_") && (strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "CHACHA20"))
			_, got, err := handshake(m.Config(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cs.ID}})
			if want && (err != nil || got != cs.ID) {
				t.Errorf("%s certificate, %s alone: %v, want it accepted", key, cs.Name, err)
			}
			if !want && err == nil {
				t.Errorf("%s certificate, %s alone: accepted", key, cs.Name)
			}
		}
		if v, _, err := handshake(m.Config(), &tls.Config{InsecureSkipVerify: true}); err != nil || v != tls.VersionTLS13 {
			t.Errorf("%s certificate, a client offering TLS 1.3: version %x, %v", key, v, err)
		}
		if _, _, err := handshake(m.Config(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
			t.Errorf("%s certificate: TLS 1.1 accepted", key)
		}
	}
}

// TestSelfSignedNames: the self-signed certificate names the loopback
// addresses as IP addresses, for the clients that follow RFC 6125, and as
// DNS names, for those that only look at DNS names and the Common Name
// (s-nail 14.9: "TLS certificate does not match" for 127.0.0.1).
func TestSelfSignedNames(t *testing.T) {
	m, err := New(t.TempDir(), new(mailconf.Live), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(leaf.DNSNames, n) {
			t.Errorf("DNS names %v lack %s", leaf.DNSNames, n)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
}

// TestSelfSignedFollowsNames: the self-signed certificate names the box
// as its mail clients reach it (mail.<domain> of each domain, manual
// 6.4.2), and is made anew when a domain or the host name is added.
func TestSelfSignedFollowsNames(t *testing.T) {
	dir := t.TempDir()
	var live mailconf.Live
	s := mailconf.Default()
	s.Hostname = "mail.ma-societe.fr"
	s.Names = []string{"mail.ma-societe.fr", "Mail.Autre.FR."}
	live.Store(s)
	m, err := New(dir, &live, nil)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(c *tls.Certificate, hosts ...string) {
		t.Helper()
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		for _, h := range hosts {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
				t.Errorf("verify for %s: %v (names %v)", h, err, leaf.DNSNames)
			}
		}
	}
	first, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	verify(first, "mail.ma-societe.fr", "mail.autre.fr", "localhost", "127.0.0.1")

	// The same names: the same certificate, also after a restart (a
	// manager of its own settings: two managers of one directory would
	// both make certificates on the next Store).
	var restarted mailconf.Live
	restarted.Store(s)
	m2, err := New(dir, &restarted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m2.Certificate(); !bytes.Equal(again.Certificate[0], first.Certificate[0]) {
		t.Fatal("a new certificate for the same names")
	}

	// A new domain: the store of the settings makes a new certificate
	// that names it, on disk before Store returns.
	s.Names = append(s.Names, "mail.troisieme.fr")
	live.Store(s)
	onDisk, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", SelfSignedCert), filepath.Join(dir, "tls", SelfSignedKey))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(onDisk.Certificate[0], first.Certificate[0]) {
		t.Fatal("no new certificate on disk for a new domain")
	}
	verify(&onDisk, "mail.troisieme.fr", "mail.ma-societe.fr")
	if got, _ := m.Certificate(); !bytes.Equal(got.Certificate[0], onDisk.Certificate[0]) {
		t.Fatal("the handshake presents another certificate than the one on disk")
	}

	// Settings stored at once from several goroutines, and handshakes:
	// the key and the certificate on disk always match, and name the
	// last settings.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := s
			s.Names = append(slices.Clone(s.Names), fmt.Sprintf("mail.d%d.fr", i))
			live.Store(s)
			if _, err := m.Config().GetCertificate(&tls.ClientHelloInfo{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	final, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", SelfSignedCert), filepath.Join(dir, "tls", SelfSignedKey))
	if err != nil {
		t.Fatalf("the files on disk: %v", err)
	}
	last := live.Load()
	verify(&final, last.Names...)
}
