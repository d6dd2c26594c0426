package auth_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/store"
)

func loginStore(t *testing.T, password string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash, err := auth.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		if err := tx.PutDomain(ctx, store.Domain{Name: "ma-societe.fr", Language: "fr"}); err != nil {
			return err
		}
		if err := tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "rene", Name: "René", PasswordHash: hash}); err != nil {
			return err
		}
		return tx.PutAccount(ctx, store.Account{Domain: "ma-societe.fr", ID: "abuse", Name: "abuse"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLogin(t *testing.T) {
	st := loginStore(t, "rene-demo")
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

func TestLoginRateLimit(t *testing.T) {
	st := loginStore(t, "rene-demo")
	a := auth.NewAuthenticatorLimits(st, nil, auth.Limits{Failures: 3, FailureEvery: time.Hour})
	ctx := context.Background()
	bad := netip.MustParseAddr("203.0.113.9")
	for i := range 3 {
		if _, err := a.Login(ctx, "smtp", bad, "rene@ma-societe.fr", "guess"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Even the right password is refused now, from that client.
	if _, err := a.Login(ctx, "smtp", bad, "rene@ma-societe.fr", "rene-demo"); !errors.Is(err, auth.ErrTooManyFailures) {
		t.Fatalf("after 3 failures: %v, want ErrTooManyFailures", err)
	}
	// Another client is not affected; IPv6 clients are grouped by /64.
	if _, err := a.Login(ctx, "smtp", netip.MustParseAddr("192.168.1.20"), "rene@ma-societe.fr", "rene-demo"); err != nil {
		t.Fatalf("other client: %v", err)
	}
	v6 := []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"}
	for _, s := range v6 {
		a.Login(ctx, "imap", netip.MustParseAddr(s), "rene@ma-societe.fr", "guess")
	}
	if _, err := a.Login(ctx, "imap", netip.MustParseAddr("2001:db8::ffff"), "rene@ma-societe.fr", "rene-demo"); !errors.Is(err, auth.ErrTooManyFailures) {
		t.Fatalf("same /64: %v, want ErrTooManyFailures", err)
	}
}

func TestLoginConcurrent(t *testing.T) {
	st := loginStore(t, "rene-demo")
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
