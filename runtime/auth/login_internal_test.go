package auth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailfountain.dev/mailfountain/runtime/store"
)

// internalStore holds rene@ma-societe.fr (password "rene-demo", bcrypt at
// its lowest cost) and abuse@ma-societe.fr, without a password.
func internalStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := bcrypt.GenerateFromPassword([]byte("rene-demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutDomain(ctx, store.Domain{Name: "ma-societe.fr", Language: "fr"}),
			tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "rene", Name: "René", PasswordHash: string(h)}),
			tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "abuse", Name: "abuse"}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLoginOneCostPath checks that every login with a well-formed address
// costs one hash check, and that names without a usable hash are checked
// against a hash with HashPassword's parameters, whatever the cache holds.
// The time this takes is measured over the real servers (smtpd's and
// imapd's timing tests); here, which hash is checked.
func TestLoginOneCostPath(t *testing.T) {
	st := internalStore(t)
	a := NewAuthenticator(st, nil)
	var checked []string
	a.checkHash = func(hash, pw string) bool {
		checked = append(checked, hash)
		return CheckPassword(hash, pw)
	}
	if !strings.HasPrefix(a.dummy, "$argon2id$v=19$m=65536,t=3,p=4$") || ValidateHash(a.dummy) != nil {
		t.Fatalf("dummy hash %q: want a valid argon2id hash with HashPassword's parameters", a.dummy)
	}
	rene, err := st.Account(context.Background(), "ma-societe.fr", "rene")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		address, password string
		ok                bool
		checks            []string // the hashes checked
	}{
		{"nobody@ma-societe.fr", "rene-demo", false, []string{a.dummy}},
		{"rene@elsewhere.fr", "rene-demo", false, []string{a.dummy}},
		{"abuse@ma-societe.fr", "", false, []string{a.dummy}},
		{"abuse@ma-societe.fr", "anything", false, []string{a.dummy}},
		{"rene@ma-societe.fr", "wrong", false, []string{rene.PasswordHash}},
		{"rene@ma-societe.fr", "rene-demo", true, []string{rene.PasswordHash}},
		{"Rene@Ma-Societe.fr", "rene-demo", true, nil}, // remembered
		// The cache makes neither a wrong password nor an unknown name
		// cheaper.
		{"rene@ma-societe.fr", "wrong", false, []string{rene.PasswordHash}},
		{"nobody@ma-societe.fr", "rene-demo", false, []string{a.dummy}},
		{"rene", "rene-demo", false, nil}, // no account has such a name
	}
	client := netip.MustParseAddr("192.0.2.1")
	for _, tt := range tests {
		checked = nil
		_, err := a.Login(context.Background(), "imap", client, tt.address, tt.password)
		if (err == nil) != tt.ok {
			t.Errorf("Login(%q, %q): %v, want ok=%v", tt.address, tt.password, err, tt.ok)
		}
		if strings.Join(checked, " ") != strings.Join(tt.checks, " ") {
			t.Errorf("Login(%q, %q) checked %q, want %q", tt.address, tt.password, checked, tt.checks)
		}
	}
}

// holdChecks makes a's hash checks wait for release, then answer as check
// does; checks reports how many have begun.
func holdChecks(a *Authenticator, release <-chan struct{}, check func(hash, pw string) bool) (checks func() int) {
	var mu sync.Mutex
	n := 0
	a.checkHash = func(hash, pw string) bool {
		mu.Lock()
		n++
		mu.Unlock()
		<-release
		return check(hash, pw)
	}
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestLoginParallelFailures checks that attempts made at once cannot go
// past a budget: each spends its failure before its hash is checked.
func TestLoginParallelFailures(t *testing.T) {
	st := internalStore(t)
	a := NewAuthenticatorLimits(st, nil, Limits{AccountFailures: 3, FailureEvery: time.Hour, Hashing: 16})
	release := make(chan struct{})
	checks := holdChecks(a, release, func(string, string) bool { return false })
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := a.Login(context.Background(), "smtp", netip.MustParseAddr("192.0.2.1"), "rene@ma-societe.fr", "guess")
			errs <- err
		})
	}
	// The refused ones answer at once; the others wait in checkHash.
	// time.After fires once: the loop ends there, or it would wait forever.
	timeout := time.After(10 * time.Second)
refused:
	for range n - 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrTooManyFailures) {
				t.Errorf("got %v, want ErrTooManyFailures", err)
			}
		case <-timeout:
			t.Error("fewer than 5 attempts refused at once")
			break refused
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("got %v, want ErrBadCredentials", err)
		}
	}
	if got := checks(); got != 3 {
		t.Errorf("%d hashes checked for %d attempts at once, want 3 (the budget)", got, n)
	}
}

// TestLoginParallelSuccesses checks that logins made at once, more than
// a budget holds (a mail client's connections and a phone's behind one
// NAT, all opening after a restart), are not refused for failures none of
// them made: an attempt spends a failure only once its hash is being
// checked, and only Hashing are at once.
func TestLoginParallelSuccesses(t *testing.T) {
	st := internalStore(t)
	a := NewAuthenticatorLimits(st, nil, Limits{AccountFailures: 3, AddressFailures: 3, FailureEvery: time.Hour, Hashing: 2})
	release := make(chan struct{})
	checks := holdChecks(a, release, CheckPassword)
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := a.Login(context.Background(), "imap", netip.MustParseAddr("192.0.2.1"), "rene@ma-societe.fr", "rene-demo")
			errs <- err
		})
	}
	// Two attempts in checkHash, the others waiting behind them.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c := checks()
		if c == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hashes being checked, want 2", c)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a correct login among %d at once: %v", n, err)
		}
	}
}

// TestBudgets checks the token arithmetic of a budget.
func TestBudgets(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	bs := newBudgets[int](10, 5*time.Minute) // one back every 30 s
	for i := range 10 {
		if got := bs.tokens(1, now); got != float64(10-i) {
			t.Fatalf("after %d failures: %v tokens", i, got)
		}
		bs.spend(1, now)
	}
	if got := bs.tokens(1, now); got != 0 {
		t.Fatalf("after 10 failures: %v tokens, want 0", got)
	}
	if got := bs.tokens(1, now.Add(45*time.Second)); got != 1.5 {
		t.Errorf("45 s later: %v tokens, want 1.5", got)
	}
	if got := bs.tokens(1, now.Add(time.Hour)); got != 10 {
		t.Errorf("an hour later: %v tokens, want 10 (full)", got)
	}
	bs.refund(1, now)
	if got := bs.tokens(1, now); got != 1 {
		t.Errorf("after a refund: %v tokens, want 1", got)
	}
	bs.refund(2, now) // no entry: nothing to do
	if len(bs.m) != 1 {
		t.Errorf("%d entries, want 1", len(bs.m))
	}
	bs.spend(3, now)
	bs.refund(3, now)
	if _, ok := bs.m[3]; ok {
		t.Error("a budget full again is kept")
	}
}

// TestBudgetsBounded checks that names sprayed from many addresses keep
// the memory bounded and do not free a locked name.
func TestBudgetsBounded(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	bs := newBudgets[int](3, time.Hour)
	bs.max = 100
	for range 3 {
		bs.spend(0, now) // locked
	}
	for k := 1; k <= 10_000; k++ {
		at := now.Add(time.Duration(k) * time.Millisecond)
		bs.spend(k, at)
		if k%7 == 0 {
			bs.spend(k, at) // some spend more
		}
		if len(bs.m) > bs.max {
			t.Fatalf("%d entries after %d names, max %d", len(bs.m), k, bs.max)
		}
	}
	if got := bs.tokens(0, now.Add(10*time.Second)); got >= 1 {
		t.Errorf("the locked name has %v tokens after the spray, want < 1", got)
	}
}
