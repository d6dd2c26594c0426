package tlscert

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

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
	if err := generate(other, filepath.Join(other, "c.pem"), filepath.Join(other, "k.pem")); err != nil {
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
