package dkimsign

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	day1 = time.Date(2026, 12, 4, 23, 30, 0, 0, time.FixedZone("CET", 3600)) // 22:30 UTC: still the 4th
	day2 = time.Date(2027, 3, 1, 8, 0, 0, 0, time.UTC)
)

func TestEnsureMakesThenLoads(t *testing.T) {
	dir := t.TempDir()
	k, err := Ensure(dir, "Example.COM.", day1)
	if err != nil {
		t.Fatal(err)
	}
	if k.Domain != "example.com" || k.Ed25519.Selector != "mf20261204e" || k.RSA.Selector != "mf20261204r" || len(k.Older) != 0 {
		t.Fatalf("keys: domain %q selectors %q %q, %d older", k.Domain, k.Ed25519.Selector, k.RSA.Selector, len(k.Older))
	}
	if _, ok := k.Ed25519.Signer.(ed25519.PrivateKey); !ok || k.Ed25519.Algorithm != Ed25519 {
		t.Errorf("ed25519 key is %T %s", k.Ed25519.Signer, k.Ed25519.Algorithm)
	}
	if r, ok := k.RSA.Signer.(*rsa.PrivateKey); !ok || r.N.BitLen() != 2048 || k.RSA.Algorithm != RSA {
		t.Errorf("rsa key is %T %s", k.RSA.Signer, k.RSA.Algorithm)
	}
	ddir := filepath.Join(dir, "example.com")
	if fi, err := os.Stat(ddir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("domain directory: %v %v, want mode 0700", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(ddir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if want := []string{"mf20261204e.key", "mf20261204r.key"}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}

	// A second Ensure, even a later day, loads the same keys.
	before := statAll(t, ddir)
	k2, err := Ensure(dir, "example.com", day2)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(k.Ed25519, k2.Ed25519) || !samePublic(k.RSA, k2.RSA) || k2.Ed25519.Selector != "mf20261204e" {
		t.Errorf("second Ensure made other keys: %s %s", k2.Ed25519.Selector, k2.RSA.Selector)
	}
	if after := statAll(t, ddir); !slices.Equal(before, after) {
		t.Errorf("second Ensure rewrote the files: %v then %v", before, after)
	}
}

func statAll(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fi, _ := e.Info()
		out = append(out, e.Name()+" "+fi.ModTime().String())
	}
	return out
}

func samePublic(a, b Key) bool {
	pa, _ := x509.MarshalPKIXPublicKey(a.Signer.Public())
	pb, _ := x509.MarshalPKIXPublicKey(b.Signer.Public())
	return a.Selector == b.Selector && string(pa) == string(pb)
}

func TestRecords(t *testing.T) {
	k, err := Ensure(t.TempDir(), "example.org", day1)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := k.Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for i, tc := range []struct{ name, k string }{
		{"mf20261204e._domainkey.example.org", "ed25519"},
		{"mf20261204r._domainkey.example.org", "rsa"},
	} {
		r := recs[i]
		if r.Name != tc.name {
			t.Errorf("record %d: name %q, want %q", i, r.Name, tc.name)
		}
		for _, s := range r.Strings {
			if len(s) > 255 || len(s) == 0 {
				t.Errorf("%s: a string of %d bytes", r.Name, len(s))
			}
		}
		prefix := "v=DKIM1; k=" + tc.k + "; p="
		p, ok := strings.CutPrefix(r.Value(), prefix)
		if !ok {
			t.Fatalf("%s: %q does not start with %q", r.Name, r.Value(), prefix)
		}
		der, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("%s: p=: %v", r.Name, err)
		}
		switch tc.k {
		case "ed25519":
			if len(der) != ed25519.PublicKeySize || len(r.Strings) != 1 {
				t.Errorf("%s: %d key bytes in %d strings", r.Name, len(der), len(r.Strings))
			}
		case "rsa":
			pub, err := x509.ParsePKIXPublicKey(der)
			if _, ok := pub.(*rsa.PublicKey); err != nil || !ok {
				t.Errorf("%s: p= is %T, %v", r.Name, pub, err)
			}
			if len(r.Strings) < 2 {
				t.Errorf("%s: %d strings, an RSA-2048 record needs 2", r.Name, len(r.Strings))
			}
		}
		if zone := r.String(); !strings.HasPrefix(zone, tc.name+". IN TXT \"v=DKIM1; ") || strings.Count(zone, `"`) != 2*len(r.Strings) {
			t.Errorf("zone line %q", zone)
		}
	}
}

func TestRotateAndRemove(t *testing.T) {
	dir := t.TempDir()
	if _, err := Rotate(dir, "example.net", day1); !errors.Is(err, ErrNoKeys) {
		t.Errorf("Rotate without keys: %v, want ErrNoKeys", err)
	}
	old, err := Ensure(dir, "example.net", day1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(dir, "example.net", day1.Add(time.Hour)); err == nil {
		t.Error("a second rotation the same day was accepted")
	}
	k, err := Rotate(dir, "example.net", day2)
	if err != nil {
		t.Fatal(err)
	}
	if k.Ed25519.Selector != "mf20270301e" || k.RSA.Selector != "mf20270301r" {
		t.Errorf("after rotation the signing selectors are %s %s", k.Ed25519.Selector, k.RSA.Selector)
	}
	if len(k.Older) != 2 || !samePublic(k.Older[0], old.RSA) || !samePublic(k.Older[1], old.Ed25519) {
		t.Errorf("older keys after rotation: %+v", k.Older)
	}
	again, err := Ensure(dir, "example.net", day2.Add(24*time.Hour))
	if err != nil || again.Ed25519.Selector != "mf20270301e" {
		t.Errorf("Ensure after rotation: %s %v", again.Ed25519.Selector, err)
	}
	recs, _ := k.Records()
	if got := recordNames(recs); !slices.Equal(got, []string{"mf20270301e", "mf20270301r", "mf20261204r", "mf20261204e"}) {
		t.Errorf("records after rotation: %v", got)
	}

	if err := Remove(dir, "example.net", "mf20270301e"); err == nil {
		t.Error("Remove of the signing pair was accepted")
	}
	if err := Remove(dir, "example.net", "../x"); err == nil {
		t.Error("Remove of a bad selector was accepted")
	}
	if err := Remove(dir, "example.net", "mf20261204r"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, "example.net", "mf20261204"); err == nil {
		t.Error("a second Remove found keys")
	}
	k, err = Load(dir, "example.net")
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = k.Records()
	if got := recordNames(recs); !slices.Equal(got, []string{"mf20270301e", "mf20270301r"}) {
		t.Errorf("records after Remove: %v", got)
	}
}

func recordNames(recs []TXT) []string {
	var out []string
	for _, r := range recs {
		out = append(out, strings.TrimSuffix(r.Name, "._domainkey.example.net"))
	}
	return out
}

// A crash between the two key writes leaves one key: Ensure makes its pair
// under the same date rather than a new date, so no key is left unused.
func TestEnsureCompletesHalfPair(t *testing.T) {
	dir := t.TempDir()
	k, err := Ensure(dir, "example.com", day1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "example.com", "mf20261204r.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "example.com"); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Load of half a pair: %v, want ErrNoKeys", err)
	}
	k2, err := Ensure(dir, "example.com", day2)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(k.Ed25519, k2.Ed25519) || k2.RSA.Selector != "mf20261204r" || samePublic(k.RSA, k2.RSA) {
		t.Errorf("half pair completed as %s/%s", k2.Ed25519.Selector, k2.RSA.Selector)
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(ddir string) error
	}{
		{"readable by others", func(ddir string) error { return os.Chmod(filepath.Join(ddir, "mf20261204e.key"), 0o644) }},
		{"not PEM", func(ddir string) error {
			return os.WriteFile(filepath.Join(ddir, "mf20261204r.key"), []byte("junk"), 0o600)
		}},
		{"wrong algorithm", func(ddir string) error {
			return os.Rename(filepath.Join(ddir, "mf20261204r.key"), filepath.Join(ddir, "mf20261204e.key"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, "example.com", day1); err != nil {
				t.Fatal(err)
			}
			if err := tc.spoil(filepath.Join(dir, "example.com")); err != nil {
				t.Fatal(err)
			}
			if tc.name == "wrong algorithm" {
				// the e key is now RSA, and the r key is gone: make an r again
				if err := makePair(dir, "example.com", "mf20261204"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Load(dir, "example.com"); err == nil || errors.Is(err, ErrNoKeys) {
				t.Errorf("Load: %v, want a refusal", err)
			}
			if _, err := Ensure(dir, "example.com", day1); err == nil {
				t.Error("Ensure accepted spoiled keys")
			}
		})
	}
}

func TestBadDomain(t *testing.T) {
	for _, d := range []string{"", "..", "../etc", "a/b", "ex ample.com", "-a.com", "a..b", strings.Repeat("a", 64) + ".com"} {
		if _, err := Ensure(t.TempDir(), d, day1); err == nil {
			t.Errorf("Ensure(%q) accepted", d)
		}
	}
}
