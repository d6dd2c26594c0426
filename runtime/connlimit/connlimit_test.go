package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
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

func TestAddrOf(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 25, Zone: "eth0"}, "fe80::1"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.UnixAddr{Name: "/run/sock", Net: "unix"}, "invalid IP"},
	} {
		if got := AddrOf(tt.addr).String(); got != tt.want {
			t.Errorf("AddrOf(%v) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// flakyListener fails its first Accepts with a passing error.
type flakyListener struct {
	net.Listener
	fails int
}

type tempErr struct{}

func (tempErr) Error() string   { return "too many open files" }
func (tempErr) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, tempErr{}
	}
	return l.Listener.Accept()
}

func TestAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	var retries []time.Duration
	c, err := Accept(t.Context(), &flakyListener{Listener: ln, fails: 2}, func(_ error, d time.Duration) { retries = append(retries, d) })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(retries) != 2 || retries[0] != 5*time.Millisecond || retries[1] != 10*time.Millisecond {
		t.Errorf("retries %v", retries)
	}

	ln.Close()
	if _, err := Accept(t.Context(), ln, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("closed listener: %v", err)
	}
}
