package hostnet

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolvers(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"", nil},
		{"# comment\nsearch lan\nnameserver 192.0.2.53\nnameserver  2001:db8::53\noptions edns0\n", []string{"192.0.2.53", "2001:db8::53"}},
		{"nameserver fe80::1%eth0\nnameserver not-an-address\nnameserver\n; nameserver 192.0.2.9\n", []string{"fe80::1%eth0"}},
		{"nameserver ::ffff:192.0.2.1\n", []string{"192.0.2.1"}},
	} {
		got, err := parseResolvers(strings.NewReader(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		var gs []string
		for _, a := range got {
			gs = append(gs, a.String())
		}
		if !slices.Equal(gs, tc.want) {
			t.Errorf("%q: %q, want %q", tc.text, gs, tc.want)
		}
	}
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if got, err := Resolvers(p); err != nil || got != nil {
		t.Errorf("a missing file: %v %v", got, err)
	}
	if err := os.WriteFile(p, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolvers(p); err != nil || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.53")}) {
		t.Errorf("file: %v %v", got, err)
	}
}

// TestRouteAddress asks the kernel; a host without any route (a bare
// network namespace) has no address to give, which must be an error,
// never a wrong address.
func TestRouteAddress(t *testing.T) {
	a, err := RouteAddress(context.Background())
	if err != nil {
		t.Logf("no default route here: %v", err)
		if a.IsValid() {
			t.Errorf("an address with an error: %s", a)
		}
		return
	}
	if !a.IsValid() || a.IsUnspecified() || a.Zone() != "" {
		t.Errorf("route address %s", a)
	}
	t.Logf("route address %s", a)
}
