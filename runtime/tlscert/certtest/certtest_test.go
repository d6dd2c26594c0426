package certtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

// TestIssue checks that a client trusting the CA (by its pool, or by the
// PEM file) accepts its certificates for their names only, and that a
// client trusting another CA refuses them.
func TestIssue(t *testing.T) {
	ca, other := New(t), New(t)
	data, err := os.ReadFile(ca.File(t))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("File: no PEM certificate in %q", data)
	}
	fromFile := x509.NewCertPool()
	if !fromFile.AppendCertsFromPEM(data) {
		t.Fatal("File: the PEM is not a certificate")
	}
	cert := ca.Issue(t, "mx.example.test", "127.0.0.2")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		roots *x509.CertPool
		host  string
		ok    bool
	}{
		{"pool, DNS name", ca.Pool(), "mx.example.test", true},
		{"pool, address", ca.Pool(), "127.0.0.2", true},
		{"file, DNS name", fromFile, "mx.example.test", true},
		{"pool, other name", ca.Pool(), "other.example.test", false},
		{"pool, other address", ca.Pool(), "127.0.0.3", false},
		{"other CA", other.Pool(), "mx.example.test", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, DNSName: c.host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != c.ok {
				t.Errorf("Verify(%s) = %v, want ok %v", c.host, err, c.ok)
			}
		})
	}
	// A real handshake on loopback: the chain Issue gives a server
	// verifies at a Go client trusting the CA.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.example.test"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}
