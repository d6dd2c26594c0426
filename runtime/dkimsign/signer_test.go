package dkimsign

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signerDir is a keys directory with the keys of example.com.
func signerDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := Ensure(dir, "example.com", day1); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSignerSignsByFrom(t *testing.T) {
	python := pythonDKIM(t)
	dir := signerDir(t)
	k, err := Load(dir, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	rs, _ := k.Records()
	for _, r := range rs {
		recs[r.Name] = r.Value()
	}
	s := NewSigner(dir)
	tests := []struct {
		name, msg string
		signed    bool
	}{
		{"from the domain", "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n", true},
		{"upper case", "FROM: Alice <ALICE@Example.COM>\r\nSubject: hi\r\n\r\nHello.\r\n", true},
		{"two authors of the domain", "From: alice@example.com, bob@example.com\r\nSender: alice@example.com\r\n\r\nHello.\r\n", true},
		{"encoded display name", "From: =?utf-8?q?Ren=C3=A9?= <rene@example.com>\r\n\r\nHello.\r\n", true},
		{"lf only", "From: alice@example.com\nSubject: hi\n\nHello.\n", true},
		{"no body", "From: alice@example.com\r\nSubject: hi\r\n", true},
		{"another domain", "From: carol@example.org\r\n\r\nHello.\r\n", false},
		{"a subdomain", "From: news@lists.example.com\r\n\r\nHello.\r\n", false},
		{"authors of two domains", "From: alice@example.com, carol@example.org\r\n\r\nHello.\r\n", false},
		{"two From fields", "From: alice@example.com\r\nFrom: alice@example.com\r\n\r\nHello.\r\n", false},
		{"no From", "To: bob@example.net\r\n\r\nHello.\r\n", false},
		{"From that does not parse", "From: alice at example.com\r\n\r\nHello.\r\n", false},
		{"address literal", "From: alice@[192.0.2.1]\r\n\r\nHello.\r\n", false},
		{"From after a bad line", "Subject hi\r\nFrom: alice@example.com\r\n\r\nHello.\r\n", false},
		{"empty message", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, err := signerSign(s, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.signed {
				if fields != nil {
					t.Fatalf("signed a message it should not: %q", fields)
				}
				return
			}
			if !bytes.HasPrefix(fields, []byte("DKIM-Signature:")) || bytes.Count(fields, []byte("DKIM-Signature:")) != 2 {
				t.Fatalf("fields %q: want two DKIM-Signature fields", fields)
			}
			signed := append(fields, tt.msg...)
			res := pyVerify(t, python, signed, recs)
			if len(res) != 2 {
				t.Fatalf("dkimpy saw %d signatures: %+v", len(res), res)
			}
			for i, want := range []string{"ed25519-sha256", "rsa-sha256"} {
				if !res[i].OK || res[i].A != want {
					t.Errorf("dkimpy: signature %d: %+v, want %s verified", i, res[i], want)
				}
			}
		})
	}
}

// The keys are read once, then used from the cache while their directory
// is unchanged; a rotation (a new pair in the directory) is seen at the
// next message.
func TestSignerCachesUntilTheDirectoryChanges(t *testing.T) {
	dir := signerDir(t)
	ddir := filepath.Join(dir, "example.com")
	s := NewSigner(dir)
	msg := "From: alice@example.com\r\n\r\nHello.\r\n"
	selector := func() string {
		t.Helper()
		f, err := signerSign(s, msg)
		if err != nil || f == nil {
			t.Fatalf("Sign = %q, %v", f, err)
		}
		_, rest, _ := strings.Cut(string(f), "s=")
		sel, _, _ := strings.Cut(rest, ";")
		return sel
	}
	// The directory as it is long after the keys were made.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(ddir, old, old); err != nil {
		t.Fatal(err)
	}
	if got := selector(); got != "mf20261204e" {
		t.Fatalf("selector %q", got)
	}
	// A key file broken in place, the directory untouched: the cached
	// keys keep signing, nothing is read again.
	key := filepath.Join(ddir, "mf20261204e.key")
	if err := os.WriteFile(key, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(ddir, old, old); err != nil {
		t.Fatal(err)
	}
	if got := selector(); got != "mf20261204e" {
		t.Fatalf("selector %q after a change the cache must not see", got)
	}
	// Remade (the directory changes): read again.
	os.Remove(key)
	if _, err := Ensure(dir, "example.com", day1); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(dir, "example.com", day2); err != nil {
		t.Fatal(err)
	}
	if got := selector(); got != "mf20270301e" {
		t.Fatalf("after a rotation: selector %q, want mf20270301e", got)
	}
	// A domain whose keys appear is seen at once.
	if f, err := signerSign(s, "From: a@example.org\r\n\r\nx\r\n"); f != nil || err != nil {
		t.Fatalf("no keys: Sign = %q, %v", f, err)
	}
	if _, err := Ensure(dir, "example.org", day1); err != nil {
		t.Fatal(err)
	}
	if f, err := signerSign(s, "From: a@example.org\r\n\r\nx\r\n"); f == nil || err != nil {
		t.Fatalf("new keys: Sign = %q, %v", f, err)
	}
}

// BenchmarkSignerSign10KB is the cost of signing one 10 KB message with
// both keys, as the queue does at enqueue: the keys come from the cache,
// one stat of their directory per message.
func BenchmarkSignerSign10KB(b *testing.B) {
	dir := signerDir(b)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "example.com"), old, old)
	s := NewSigner(dir)
	var m strings.Builder
	m.WriteString("From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: a bench\r\nDate: Fri, 04 Dec 2026 09:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n")
	for m.Len() < 10<<10 {
		m.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n")
	}
	msg := m.String()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if f, err := signerSign(s, msg); err != nil || f == nil {
			b.Fatal(f, err)
		}
	}
}

// BenchmarkSignerKeys is the signer's own cost per message besides the
// signing: a stat of the domain's key directory and a cache look-up.
func BenchmarkSignerKeys(b *testing.B) {
	dir := signerDir(b)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "example.com"), old, old)
	s := NewSigner(dir)
	for b.Loop() {
		if _, err := s.Keys("example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// The queue signs from several goroutines with one Signer, while the
// keys of a domain are made.
func TestSignerConcurrent(t *testing.T) {
	dir := signerDir(t)
	s := NewSigner(dir)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				from := "alice@example.com"
				if g%2 == 1 {
					from = "carol@example.org"
				}
				_, err = signerSign(s, "From: "+from+"\r\n\r\nHello.\r\n")
			}
			errs <- err
		}()
	}
	if _, err := Ensure(dir, "example.org", day1); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if f, err := signerSign(s, "From: carol@example.org\r\n\r\nHello.\r\n"); f == nil || err != nil {
		t.Errorf("after the keys were made: Sign = %q, %v", f, err)
	}
}

// signerSign gives msg to s.Sign as the queue does, in the pieces of its
// copy buffer (here a prime number of bytes, so that line ends straddle
// the pieces).
func signerSign(s *Signer, msg string) ([]byte, error) {
	return s.Sign(func(w io.Writer) error {
		for rest := msg; len(rest) > 0; {
			n := min(len(rest), 61)
			if _, err := io.WriteString(w, rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
}

// A message that is not signed (no keys for its From's domain) is not
// hashed past its header.
func TestSignerSkipsTheBodyOfUnsigned(t *testing.T) {
	s := NewSigner(signerDir(t))
	for _, tc := range []struct {
		from   string
		hashed bool
	}{{"carol@example.org", false}, {"alice@example.com", true}} {
		m := &message{s: s, d: newDigest()}
		io.WriteString(m, "From: "+tc.from+"\r\n\r\n")
		io.WriteString(m, "Hello.\r\n")
		if m.d.written != tc.hashed {
			t.Errorf("From %s: body hashed %v, want %v", tc.from, m.d.written, tc.hashed)
		}
	}
}
