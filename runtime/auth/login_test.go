package auth_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/store"
)

// loginStore holds ma-societe.fr with rene and julie, whose password is
// password (hashed by HashPassword, or by hash if not nil), and abuse,
// without a password.
func loginStore(t *testing.T, password string, hash func(string) (string, error)) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if hash == nil {
		hash = auth.HashPassword
	}
	h, err := hash(password)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutDomain(ctx, store.Domain{Name: "ma-societe.fr", Language: "fr"}),
			tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "rene", Name: "René", PasswordHash: h}),
			tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "julie", Name: "Julie", PasswordHash: h}),
			tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "abuse", Name: "abuse"}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// bcryptHash hashes at bcrypt's lowest cost, for tests that fail many
// logins of known accounts.
func bcryptHash(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	return string(h), err
}

func TestLogin(t *testing.T) {
	st := loginStore(t, "rene-demo", nil)
	a := auth.NewAuthenticator(st, nil)
	ctx := context.Background()
	client := netip.MustParseAddr("192.168.1.20")
	tests := []struct {
		address, password string
		want              error
	}{
		{"rene@ma-societe.fr", "rene-demo", nil},
		{"RENE@Ma-Societe.FR", "rene-demo", nil},
		{"rene@ma-societe.fr", "rene-demo", nil}, // cached
		{"rene", "rene-demo", auth.ErrBadCredentials},
		{"rene@ma-societe.fr", "wrong", auth.ErrBadCredentials},
		{"nobody@ma-societe.fr", "rene-demo", auth.ErrBadCredentials},
		{"abuse@ma-societe.fr", "", auth.ErrBadCredentials}, // no password: cannot log in
		{"rene@other.fr", "rene-demo", auth.ErrBadCredentials},
		{"rene@ma-societe.fr@x", "rene-demo", auth.ErrBadCredentials},
		{"@ma-societe.fr", "rene-demo", auth.ErrBadCredentials},
	}
	for _, tt := range tests {
		p, err := a.Login(ctx, "pop3", client, tt.address, tt.password)
		if tt.want == nil {
			if err != nil {
				t.Errorf("Login(%q): %v", tt.address, err)
				continue
			}
			if p.Address != "rene@ma-societe.fr" || p.Account != "rene" || p.Domain != "ma-societe.fr" {
				t.Errorf("Login(%q) = %+v", tt.address, p)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("Login(%q, %q) = %v, want %v", tt.address, tt.password, err, tt.want)
		}
	}
	logins, err := st.AccountLogins(ctx, "ma-societe.fr")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logins {
		switch l.ID {
		case "rene":
			if l.LastLogin == nil || l.LastLogin.Service != "pop3" || time.Since(l.LastLogin.At) > time.Minute {
				t.Errorf("rene's last login = %+v", l.LastLogin)
			}
		default:
			if l.LastLogin != nil {
				t.Errorf("%s logged in: %+v", l.ID, l.LastLogin)
			}
		}
	}
}

func TestLoginLimits(t *testing.T) {
	st := loginStore(t, "rene-demo", bcryptHash)
	a := auth.NewAuthenticatorLimits(st, nil, auth.Limits{AccountFailures: 3, AddressFailures: 7, FailureEvery: time.Hour})
	ctx := context.Background()
	const (
		rene, julie, ghost = "rene@ma-societe.fr", "julie@ma-societe.fr", "ghost@ma-societe.fr"
		right, wrong       = "rene-demo", "guess"
	)
	type step struct {
		from, address, password string
		want                    error // nil: logged in
	}
	fail := func(from, address string, n int) []step {
		var s []step
		for range n {
			s = append(s, step{from, address, wrong, auth.ErrBadCredentials})
		}
		return s
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one account hammered from an address", slices.Concat(
			fail("203.0.113.9", rene, 3),
			[]step{
				// rene is refused there, right password or not, in any case.
				{"203.0.113.9", rene, right, auth.ErrTooManyFailures},
				{"203.0.113.9", "RENE@Ma-Societe.FR", right, auth.ErrTooManyFailures},
				// julie still logs in from the same address (one NAT, one
				// office), rene from elsewhere.
				{"203.0.113.9", julie, right, nil},
				{"192.0.2.20", rene, right, nil},
				{"203.0.113.9", rene, right, auth.ErrTooManyFailures},
			})},
		{"names that do not exist are counted too", slices.Concat(
			fail("203.0.113.10", ghost, 3),
			[]step{
				{"203.0.113.10", ghost, wrong, auth.ErrTooManyFailures},
				{"203.0.113.10", "GHOST@ma-societe.fr", wrong, auth.ErrTooManyFailures},
				{"203.0.113.10", rene, right, nil},
			})},
		{"a success forgets the name's failures, not the address's", slices.Concat(
			fail("203.0.113.11", rene, 2),
			[]step{{"203.0.113.11", rene, right, nil}},
			fail("203.0.113.11", rene, 2),
			[]step{{"203.0.113.11", rene, right, nil}},
			fail("203.0.113.11", julie, 2),
			fail("203.0.113.11", "abuse@ma-societe.fr", 1),
			// 7 failures from the address in all: every name is refused.
			[]step{
				{"203.0.113.11", julie, right, auth.ErrTooManyFailures},
				{"203.0.113.11", rene, right, auth.ErrTooManyFailures},
				{"203.0.113.12", julie, right, nil},
			})},
		{"IPv6 clients are grouped by /64", []step{
			{"2001:db8::1", rene, wrong, auth.ErrBadCredentials},
			{"2001:db8::2", rene, wrong, auth.ErrBadCredentials},
			{"2001:db8::3", rene, wrong, auth.ErrBadCredentials},
			{"2001:db8::ffff", rene, right, auth.ErrTooManyFailures},
			{"2001:db8::ffff", julie, right, nil},
			{"2001:db8:0:1::1", rene, right, nil},
			{"::ffff:192.0.2.30", rene, wrong, auth.ErrBadCredentials},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, s := range tt.steps {
				_, err := a.Login(ctx, "smtp", netip.MustParseAddr(s.from), s.address, s.password)
				if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
					t.Fatalf("step %d, %s from %s with %q: %v, want %v", i, s.address, s.from, s.password, err, s.want)
				}
			}
		})
	}
}

func TestLoginConcurrent(t *testing.T) {
	st := loginStore(t, "rene-demo", nil)
	a := auth.NewAuthenticatorLimits(st, nil, auth.Limits{Hashing: 2, CacheFor: time.Nanosecond})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := a.Login(context.Background(), "imap", netip.MustParseAddr("127.0.0.1"), "rene@ma-societe.fr", "rene-demo"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
