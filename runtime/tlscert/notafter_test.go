package tlscert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotAfter(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := generate(dir, cert, key, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	got, err := NotAfter(cert)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Now().AddDate(10, 0, 0); got.Before(want.Add(-time.Hour)) || got.After(want.Add(time.Hour)) {
		t.Errorf("NotAfter = %v, want about %v", got, want)
	}
	// A key before the certificate, as some bundles have it.
	k, _ := os.ReadFile(key)
	c, _ := os.ReadFile(cert)
	bundle := filepath.Join(dir, "bundle.pem")
	os.WriteFile(bundle, append(k, c...), 0o600)
	if b, err := NotAfter(bundle); err != nil || !b.Equal(got) {
		t.Errorf("NotAfter(bundle) = %v, %v; want %v", b, err, got)
	}
	for _, bad := range []string{key, filepath.Join(dir, "missing.pem")} {
		if _, err := NotAfter(bad); err == nil {
			t.Errorf("NotAfter(%s) succeeded", bad)
		}
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	if _, err := NotAfter(garbage); err == nil || !strings.Contains(err.Error(), "garbage.pem") {
		t.Errorf("NotAfter(garbage) = %v", err)
	}
}
