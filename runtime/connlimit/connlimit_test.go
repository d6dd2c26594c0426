package connlimit

import (
	"net/netip"
	"testing"
)

func TestLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.2")
	lo := netip.MustParseAddr("127.0.0.1")
	l := New(4, 2)
	steps := []struct {
		addr netip.Addr
		want string
	}{
		{a, ""}, {a, ""}, {a, TooManyFromIP}, {b, ""}, {lo, ""}, {b, TooMany},
	}
	for i, s := range steps {
		if got := l.Admit(s.addr); got != s.want {
			t.Fatalf("step %d: Admit(%v) = %q, want %q", i, s.addr, got, s.want)
		}
	}
	l.Release(a)
	if got := l.Admit(netip.MustParseAddr("192.0.2.2")); got != "" {
		t.Fatalf("after a release: %q", got)
	}
	l.Release(lo)
	if got := l.Admit(b); got != TooManyFromIP {
		t.Fatalf("mapped and plain IPv4 are one client: %q", got)
	}
	if l.Open() != 3 {
		t.Fatalf("Open = %d", l.Open())
	}

	ex := New(10, 1).ExemptLoopback()
	for range 3 {
		if got := ex.Admit(lo); got != "" {
			t.Fatalf("loopback exempt: %q", got)
		}
	}
}
