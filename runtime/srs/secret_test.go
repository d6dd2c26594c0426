package srs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateSecrets(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SecretFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if len(first) != 1 || len(first[0]) != 64 {
		t.Fatalf("created secrets %q, want one of 64 hex digits", first)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left besides the secret: %v", ents)
	}
	again, err := LoadOrCreateSecrets(dir)
	if err != nil || len(again) != 1 || !bytes.Equal(again[0], first[0]) {
		t.Fatalf("second load = %q, %v; want the first secret", again, err)
	}
	if other, _ := LoadOrCreateSecrets(t.TempDir()); len(other) == 1 && bytes.Equal(other[0], first[0]) {
		t.Error("two directories got the same secret")
	}
	// The secret loaded signs what the rewriter writes.
	now := day311
	r, err := New(Config{Secrets: first, Domain: "fwd.example", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	fwd, _ := r.Forward("user@orig.example")
	if got, err := r.Reverse(fwd); err != nil || got != "user@orig.example" {
		t.Errorf("round trip with the loaded secret: %q, %v", got, err)
	}
}

func TestLoadSecretsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SecretFile)
	if err := os.WriteFile(path, []byte("  new one \n\nold one\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrCreateSecrets(dir)
	if err != nil || len(got) != 2 || string(got[0]) != "new one" || string(got[1]) != "old one" {
		t.Fatalf("LoadOrCreateSecrets = %q, %v; want [new one, old one]", got, err)
	}
}

func TestLoadSecretsRefuses(t *testing.T) {
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{"readable by the group", "s\n", 0o640},
		{"readable by all", "s\n", 0o644},
		{"writable by all", "s\n", 0o602},
		{"empty", "", 0o600},
		{"blank lines", "\n \n", 0o600},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SecretFile)
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, c.mode); err != nil { // the umask does not apply to chmod
				t.Fatal(err)
			}
			if got, err := LoadOrCreateSecrets(dir); err == nil {
				t.Fatalf("LoadOrCreateSecrets = %q, want an error", got)
			}
		})
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, SecretFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecrets(dir); err == nil {
		t.Error("a directory in the secret's place: no error")
	}
	if _, err := LoadOrCreateSecrets(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory: no error")
	}
}

// Processes starting together on a new data directory end with one
// secret: the second never replaces the first one's.
func TestLoadOrCreateSecretsConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	results := make(chan []byte, n)
	for range n {
		go func() {
			s, err := LoadOrCreateSecrets(dir)
			if err != nil {
				t.Error(err)
				results <- nil
				return
			}
			results <- s[0]
		}()
	}
	var first []byte
	for i := range n {
		s := <-results
		if i == 0 {
			first = s
		} else if !bytes.Equal(s, first) {
			t.Fatalf("two secrets: %q and %q", first, s)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left besides the secret: %v", ents)
	}
}
