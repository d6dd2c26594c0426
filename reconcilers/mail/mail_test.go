package mail

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

func TestDesired(t *testing.T) {
	st := &schema.State{
		System:  schema.System{Hostname: "mail"},
		Network: schema.Network{Mode: "router", LAN: schema.LAN{Address: "192.168.1.1"}},
		SMTP:    schema.SMTP{LegacyPlainAuth: true, MaxMessageMB: 10},
		Domains: []schema.Domain{{Name: "ma-societe.fr"}, {Name: "autre.fr"}},
	}
	s := Desired(st)
	if s.Hostname != "mail.ma-societe.fr" || s.Domain != "ma-societe.fr" || !s.LegacyPlainAuth || s.MaxMessageBytes != 10<<20 {
		t.Errorf("Desired = %+v", s)
	}
	if want := []string{"mail.ma-societe.fr", "mail.autre.fr"}; !slices.Equal(s.Names, want) {
		t.Errorf("Names = %v, want %v", s.Names, want)
	}
	if !s.IsLAN(netip.MustParseAddr("192.168.1.77")) || s.IsLAN(netip.MustParseAddr("192.168.2.1")) || !s.IsLAN(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("LAN = %v", s.LAN)
	}
	st.Network = schema.Network{Mode: "server", WAN: schema.WAN{Method: "static", Address: "10.1.2.3/16"}}
	if s := Desired(st); len(s.LAN) != 1 || s.LAN[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("server mode LAN = %v", s.LAN)
	}
}

func TestPlanApplyObserve(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var live mailconf.Live
	r := New(st, &live, nil)
	desired := &schema.State{System: schema.System{Hostname: "mail"}, SMTP: schema.SMTP{MaxMessageMB: 25}, Domains: []schema.Domain{{Name: "ma-societe.fr"}}}

	l, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(ctx, l, desired)
	if err != nil || len(changes) != 1 || !strings.Contains(changes[0].Detail, "hostname localhost → mail.ma-societe.fr") {
		t.Fatalf("Plan = %v, %v", changes, err)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if got := live.Load().Hostname; got != "mail.ma-societe.fr" {
		t.Errorf("published hostname %q", got)
	}
	l, _ = r.Observe(ctx)
	if changes, err := r.Plan(ctx, l, desired); err != nil || len(changes) != 0 {
		t.Errorf("in sync: Plan = %v, %v", changes, err)
	}

	// A certificate that cannot be loaded fails the plan.
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	os.WriteFile(cert, []byte("not a certificate"), 0o600)
	desired.System.TLS = &schema.TLS{Certificate: cert, Key: cert}
	if _, err := r.Plan(ctx, l, desired); err == nil || !strings.Contains(err.Error(), "c.pem") {
		t.Errorf("bad certificate: Plan err = %v", err)
	}
}
