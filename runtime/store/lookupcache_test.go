package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// update runs one directory transaction, failing the test on error.
func update(t *testing.T, s *Store, fn func(ctx context.Context, tx *DirectoryTx) error) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.UpdateDirectory(ctx, func(tx *DirectoryTx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

// kindOf says what LookupAddress answers: the kind, "none", or the error.
func kindOf(s *Store, local, domain string) string {
	a, err := s.LookupAddress(context.Background(), local, domain)
	switch {
	case errors.Is(err, ErrNotFound):
		return "none"
	case err != nil:
		return err.Error()
	}
	return string(a.Kind)
}

// A write through the Store is seen by the next lookup, whatever was
// cached before it: answers found, answers not found, domains.
func TestLookupCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)

	steps := []struct {
		name   string
		change func(ctx context.Context, tx *DirectoryTx) error
		want   map[string]string // local@domain -> kind or "none"
	}{
		{"before", nil, map[string]string{
			"nobody@ma-societe.fr": "none", "direction@ma-societe.fr": "alias",
			"support@ma-societe.fr": "redirection", "rene.ricard@new.example": "none",
		}},
		{"account added", func(ctx context.Context, tx *DirectoryTx) error {
			return tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "nobody", Name: "Nobody"})
		}, map[string]string{"nobody@ma-societe.fr": "account"}},
		{"alias removed", func(ctx context.Context, tx *DirectoryTx) error {
			return tx.DeleteAlias(ctx, "ma-societe.fr", "direction")
		}, map[string]string{"direction@ma-societe.fr": "none", "nobody@ma-societe.fr": "account"}},
		{"redirection replaced by an account", func(ctx context.Context, tx *DirectoryTx) error {
			return errors.Join(tx.DeleteRedirection(ctx, "ma-societe.fr", "support"),
				tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "support", Name: "Support"}))
		}, map[string]string{"support@ma-societe.fr": "account"}},
		{"domain added", func(ctx context.Context, tx *DirectoryTx) error {
			return errors.Join(tx.PutDomain(ctx, Domain{Name: "new.example", Language: "en"}),
				tx.PutAccount(ctx, Account{Domain: "new.example", ID: "rene.ricard", Name: "R"}))
		}, map[string]string{"rene.ricard@new.example": "account"}},
		{"account removed", func(ctx context.Context, tx *DirectoryTx) error {
			return tx.DeleteAccount(ctx, "ma-societe.fr", "nobody")
		}, map[string]string{"nobody@ma-societe.fr": "none"}},
	}
	for _, step := range steps {
		if step.change != nil {
			update(t, s, step.change)
		}
		for addr, want := range step.want {
			at := strings.LastIndex(addr, "@")
			local, domain := addr[:at], addr[at+1:]
			// Twice: the second answer comes from the cache.
			for range 2 {
				if got := kindOf(s, local, domain); got != want {
					t.Fatalf("%s: %s is %s, want %s", step.name, addr, got, want)
				}
			}
		}
	}
	if d, err := s.Domain(ctx, "NEW.example"); err != nil || d.Name != "new.example" {
		t.Fatalf("Domain(NEW.example) = %+v, %v", d, err)
	}
	update(t, s, func(ctx context.Context, tx *DirectoryTx) error {
		return errors.Join(tx.DeleteAccount(ctx, "new.example", "rene.ricard"), tx.DeleteDomain(ctx, "new.example"))
	})
	if _, err := s.Domain(ctx, "new.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Domain of a removed domain: %v, want ErrNotFound", err)
	}
}

// What a caller does to an answer does not change the next one.
func TestLookupCacheCopies(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	populate(t, s)
	for range 2 {
		a, err := s.LookupAddress(ctx, "support", "ma-societe.fr")
		if err != nil || len(a.Targets) != 3 || a.Targets[0] != "charline.durand@ma-societe.fr" {
			t.Fatalf("LookupAddress(support) = %+v, %v", a, err)
		}
		a.Targets[0], a.Kind = "changed", "changed"
		d, err := s.Domain(ctx, "ma-societe.fr")
		if err != nil || d.Language != "fr" {
			t.Fatalf("Domain = %+v, %v", d, err)
		}
		d.Language = "changed"
	}
}

// Two stores on one directory stand for two processes: what one writes,
// the other sees within checkEvery although it had the old answer cached.
func TestLookupCacheOtherProcess(t *testing.T) {
	dir := t.TempDir()
	a, b := openTest(t, dir), openTest(t, dir)
	populate(t, a)
	if got := kindOf(b, "late", "ma-societe.fr"); got != "none" {
		t.Fatalf("late@ is %s before it exists", got)
	}
	update(t, a, func(ctx context.Context, tx *DirectoryTx) error {
		return tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "late", Name: "Late"})
	})
	deadline := time.Now().Add(3 * checkEvery)
	for kindOf(b, "late", "ma-societe.fr") != "account" {
		if time.Now().After(deadline) {
			t.Fatalf("the other store still answers %s after %v", kindOf(b, "late", "ma-societe.fr"), 3*checkEvery)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Lookups racing with writes: once the last write has returned, every
// lookup sees it (run with -race).
func TestLookupCacheConcurrent(t *testing.T) {
	s := openTest(t, t.TempDir())
	populate(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := s.LookupAddress(ctx, "flip", "ma-societe.fr"); err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		update(t, s, func(ctx context.Context, tx *DirectoryTx) error {
			if i%2 == 0 {
				return tx.PutAccount(ctx, Account{Domain: "ma-societe.fr", ID: "flip", Name: "Flip"})
			}
			return tx.DeleteAccount(ctx, "ma-societe.fr", "flip")
		})
		want := map[bool]string{true: "account", false: "none"}[i%2 == 0]
		if got := kindOf(s, "flip", "ma-societe.fr"); got != want {
			t.Fatalf("after write %d: flip@ is %s, want %s", i, got, want)
		}
	}
	cancel()
	wg.Wait()
}
