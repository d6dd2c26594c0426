package auth_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"mailfountain.dev/mailfountain/runtime/auth"
)

// results records what an Observer hears.
type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) Login(service, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, service+" "+result)
}

func (r *results) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

// TestLoginObserver: the observer hears each login's result, once, with
// the service that asked.
func TestLoginObserver(t *testing.T) {
	st := loginStore(t, "rene-demo", bcryptHash)
	obs := &results{}
	a := auth.NewAuthenticatorLimits(st, nil, auth.Limits{AccountFailures: 2}).Observe(obs)
	client := netip.MustParseAddr("192.0.2.30")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx               context.Context
		service           string
		address, password string
		want              string
	}{
		{context.Background(), "imap", "rene@ma-societe.fr", "rene-demo", "imap ok"},
		{context.Background(), "imap", "rene@ma-societe.fr", "rene-demo", "imap ok"}, // cached
		{context.Background(), "smtp", "rene@ma-societe.fr", "wrong", "smtp bad_password"},
		{context.Background(), "pop3", "abuse@ma-societe.fr", "", "pop3 bad_password"}, // exists, without a password
		{context.Background(), "pop3", "nobody@ma-societe.fr", "rene-demo", "pop3 unknown_user"},
		{context.Background(), "smtp", "rene", "rene-demo", "smtp unknown_user"}, // not an address
		{context.Background(), "imap", "julie@ma-societe.fr", "x", "imap bad_password"},
		{context.Background(), "imap", "julie@ma-societe.fr", "y", "imap bad_password"},
		// AccountFailures spent for julie from this client: refused unchecked.
		{context.Background(), "imap", "julie@ma-societe.fr", "rene-demo", "imap locked"},
		{canceled, "pop3", "rene@ma-societe.fr", "other", "pop3 error"},
	}
	for _, tt := range tests {
		a.Login(tt.ctx, tt.service, client, tt.address, tt.password)
		got := obs.take()
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("Login(%s, %q, %q): observer heard %q, want %q", tt.service, tt.address, tt.password, got, tt.want)
		}
	}
}
