package mail

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

var _ reconcilers.Requeuer = (*Reconciler)(nil)

// certificate writes a key and a certificate valid until notAfter.
func certificate(t *testing.T, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.ma-societe.fr"},
		DNSNames:     []string{"mail.ma-societe.fr"},
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestRequeueBefore(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		left, want time.Duration
	}{
		{90 * day, 76 * day},
		{ExpiryWarning + time.Hour, time.Hour},
		{ExpiryWarning, day},
		{3 * day, day},
		{time.Hour, time.Hour}, // once more when it expires
		{0, day},
		{-10 * day, day},
	}
	for _, c := range cases {
		if got := requeueBefore(c.left); got != c.want {
			t.Errorf("requeueBefore(%v) = %v, want %v", c.left, got, c.want)
		}
	}
}

// The reconciler asks to run again when the certificate it applied
// enters its last ExpiryWarning; with the self-signed one, never.
func TestRequeueBeforeTheCertificateExpires(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(st, &mailconf.Live{}, nil)
	desired := &schema.State{System: schema.System{Hostname: "mail"}, Domains: []schema.Domain{{Name: "ma-societe.fr"}}}
	applyDoc := func() reconcilers.Live {
		t.Helper()
		l, err := r.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := r.Plan(ctx, l, desired)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(ctx, changes); err != nil {
			t.Fatal(err)
		}
		if l, err = r.Observe(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if d := r.RequeueAfter(applyDoc()); d != 0 {
		t.Errorf("self-signed: requeue after %v, want none", d)
	}

	cert, key := certificate(t, time.Now().Add(ExpiryWarning+48*time.Hour))
	desired.System.TLS = &schema.TLS{Certificate: cert, Key: key}
	if d := r.RequeueAfter(applyDoc()); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("certificate valid two days past the warning: requeue after %v, want about 48h", d)
	}

	cert, key = certificate(t, time.Now().Add(3*time.Hour))
	desired.System.TLS = &schema.TLS{Certificate: cert, Key: key}
	if d := r.RequeueAfter(applyDoc()); d < 2*time.Hour || d > 3*time.Hour {
		t.Errorf("certificate expiring in 3 hours: requeue after %v, want about 3h", d)
	}
}
