package dhcpclient

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// The lease's timers, with a fake server and a clock that jumps: each
// case lists the exchanges the client makes, at which second, and what
// the server answers ("ok", "nak" or "silent"), and whether the client
// held a lease when it made each.

// fake is a scripted server; the clock is virtual: sleeping moves it.
type fake struct {
	mu      sync.Mutex
	t0, now time.Time
	script  []step
	calls   []string
	cancel  context.CancelFunc
	c       *Client
	release int
	lease   time.Duration
	// states are what the status showed at each exchange (status).
	states []string
}

// status is what the status shows of s: its detail and the second of
// its Until, relative to the start.
func (f *fake) status(s wanlink.State) string {
	until := "-"
	if !s.Until.IsZero() {
		until = fmt.Sprint(int(s.Until.Sub(f.t0).Seconds()))
	}
	return fmt.Sprintf("up=%v until=%s detail=%q", s.Up, until, s.Detail)
}

type step struct {
	kind   string // discover, renew, rebind
	answer string // ok, nak, silent
}

func (f *fake) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fake) after(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- f.now
	return ch
}

func (f *fake) exchange(kind string) (*nclient4.Lease, error) {
	up := f.c.State().Up
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, fmt.Sprintf("%s@%d up=%v", kind, int(f.now.Sub(f.t0).Seconds()), up))
	f.states = append(f.states, f.status(f.c.State()))
	if n >= len(f.script) {
		f.cancel()
		return nil, context.Canceled
	}
	s := f.script[n]
	if s.kind != kind {
		f.cancel()
		return nil, fmt.Errorf("exchange %s, the script expected %s", kind, s.kind)
	}
	switch s.answer {
	case "nak":
		return nil, &nclient4.ErrNak{Nak: ack(f.t0, n, f.lease)}
	case "silent":
		return nil, fmt.Errorf("unable to receive an offer: %w", nclient4.ErrNoResponse)
	}
	return &nclient4.Lease{ACK: ack(f.t0, n, f.lease)}, nil
}

// ack is the server's ACK of exchange n: the address 192.0.2.(10+n).
func ack(_ time.Time, n int, lease time.Duration) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(192, 0, 2, byte(10+n))),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(192, 0, 2, 1)),
		dhcpv4.WithDNS(net.IPv4(192, 0, 2, 53)),
		dhcpv4.WithLeaseTime(uint32(lease/time.Second)),
		dhcpv4.WithServerIP(net.IPv4(192, 0, 2, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 1))),
	)
	if err != nil {
		panic(err)
	}
	return m
}

type fakeEx struct{ f *fake }

func (e fakeEx) discover(context.Context) (*nclient4.Lease, error) { return e.f.exchange("discover") }
func (e fakeEx) renew(_ context.Context, _ *nclient4.Lease, rebind bool) (*nclient4.Lease, error) {
	if rebind {
		return e.f.exchange("rebind")
	}
	return e.f.exchange("renew")
}
func (e fakeEx) release(*nclient4.Lease) error {
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	e.f.release++
	return nil
}
func (e fakeEx) close() error { return nil }

func TestLeaseTimers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []step
		want   []string
	}{
		{
			name:   "renewed at T1, each time",
			script: []step{{"discover", "ok"}, {"renew", "ok"}, {"renew", "ok"}},
			want:   []string{"discover@0 up=false", "renew@60 up=true", "renew@120 up=true"},
		},
		{
			// T2 is at 105 s: the retry after a silent renew waits until
			// then (half of 45 s is less than a minute, capped at T2).
			name:   "renew unanswered, rebound at T2",
			script: []step{{"discover", "ok"}, {"renew", "silent"}, {"rebind", "ok"}, {"renew", "ok"}},
			want:   []string{"discover@0 up=false", "renew@60 up=true", "rebind@105 up=true", "renew@165 up=true"},
		},
		{
			name:   "nothing answers: the lease expires, discovered again at once",
			script: []step{{"discover", "ok"}, {"renew", "silent"}, {"rebind", "silent"}, {"discover", "ok"}},
			want:   []string{"discover@0 up=false", "renew@60 up=true", "rebind@105 up=true", "discover@120 up=false"},
		},
		{
			name:   "a NAK loses the lease at once",
			script: []step{{"discover", "ok"}, {"renew", "nak"}, {"discover", "ok"}},
			want:   []string{"discover@0 up=false", "renew@60 up=true", "discover@60 up=false"},
		},
		{
			name:   "no server: discoveries back off",
			script: []step{{"discover", "silent"}, {"discover", "silent"}, {"discover", "silent"}, {"discover", "ok"}},
			want:   []string{"discover@0 up=false", "discover@1 up=false", "discover@3 up=false", "discover@7 up=false"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
			f := &fake{t0: t0, now: t0, script: tc.script, cancel: cancel, lease: 2 * time.Minute}
			c := New(Config{Interface: "wan"})
			f.c, c.now, c.after = c, f.clock, f.after
			c.dial = func(string) (exchanger, error) { return fakeEx{f}, nil }
			if err := c.Run(ctx); err != nil {
				t.Fatal(err)
			}
			got := append([]string(nil), f.calls...)
			got = got[:len(got)-1] // the call past the script, which stopped the run
			if !slices.Equal(got, tc.want) {
				t.Errorf("exchanges\n%q, want\n%q", got, tc.want)
			}
			if c.State().Up {
				t.Error("still up after Run returned")
			}
		})
	}
}

// A lease held when the client stops is released, and its state goes
// down; Changed tells each move.
func TestReleaseOnStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	f := &fake{t0: t0, now: t0, script: []step{{"discover", "ok"}}, cancel: func() {}, lease: time.Hour}
	c := New(Config{Interface: "wan"})
	f.c, c.now = c, f.clock
	blocked := make(chan time.Time)
	c.after = func(time.Duration) <-chan time.Time { return blocked } // sleeps until stopped
	c.dial = func(string) (exchanger, error) { return fakeEx{f}, nil }
	ch := c.Changed()
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no change")
	}
	s := c.State()
	if !s.Up || s.Address.String() != "192.0.2.10/24" || s.Gateway.String() != "192.0.2.1" || fmt.Sprint(s.DNS) != "[192.0.2.53]" || s.Interface != "wan" {
		t.Fatalf("state %+v", s)
	}
	ch = c.Changed()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("no change when stopped")
	}
	if c.State().Up || f.release != 1 {
		t.Fatalf("after stop: %+v, %d releases", c.State(), f.release)
	}
}

func TestTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		mods         []dhcpv4.Modifier
		t1, t2, life time.Duration
	}{
		{[]dhcpv4.Modifier{dhcpv4.WithLeaseTime(120)}, 60 * time.Second, 105 * time.Second, 120 * time.Second},
		{nil, 30 * time.Minute, 52*time.Minute + 30*time.Second, time.Hour},
		{[]dhcpv4.Modifier{dhcpv4.WithLeaseTime(100), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(200 * time.Second))}, 87500 * time.Millisecond, 87500 * time.Millisecond, 100 * time.Second},
	} {
		m, err := dhcpv4.New(tc.mods...)
		if err != nil {
			t.Fatal(err)
		}
		t1, t2, exp := Times(m, t0)
		if t1.Sub(t0) != tc.t1 || t2.Sub(t0) != tc.t2 || exp.Sub(t0) != tc.life {
			t.Errorf("%v: %v %v %v", tc.mods, t1.Sub(t0), t2.Sub(t0), exp.Sub(t0))
		}
	}
}

// What the status shows between the exchanges: the last failure and the
// next try while there is no lease, the lease's expiry once there is one
// (moved by each renewal), the server's refusal when it NAKs.
func TestStatusDetail(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	f := &fake{t0: t0, now: t0, cancel: cancel, lease: 2 * time.Minute,
		script: []step{{"discover", "silent"}, {"discover", "silent"}, {"discover", "ok"}, {"renew", "ok"}, {"renew", "nak"}, {"discover", "silent"}}}
	c := New(Config{Interface: "wan"})
	f.c, c.now, c.after = c, f.clock, f.after
	c.dial = func(string) (exchanger, error) { return fakeEx{f}, nil }
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`up=false until=- detail=""`,
		`up=false until=1 detail="no DHCP server answered on wan"`,
		`up=false until=3 detail="no DHCP server answered on wan"`,
		`up=true until=123 detail=""`, // got at 3 s, for 2 minutes
		`up=true until=183 detail=""`, // renewed at 63 s
		`up=false until=- detail="the server refused to renew the lease of 192.0.2.13"`,
		`up=false until=124 detail="no DHCP server answered on wan"`, // NAKed at 123 s: the backoff starts again
	}
	if !slices.Equal(f.states, want) {
		t.Errorf("states\n%q, want\n%q", f.states, want)
	}
}

// TestHostileACK: what a broken or hostile server hands out is not taken
// as is: a lease of 0 s is a minute, renewed after 30 s; an address that
// no host can have makes no link; a mask that is not contiguous is the
// address's class; only unicast DNS servers, three at most.
func TestHostileACK(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	m, err := dhcpv4.New(dhcpv4.WithLeaseTime(0), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(0)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(0)))
	if err != nil {
		t.Fatal(err)
	}
	if t1, t2, exp := Times(m, t0); t1.Sub(t0) != minRenew || t2.Sub(t0) != minRenew || exp.Sub(t0) != minLease {
		t.Errorf("lease 0: T1 %v, T2 %v, expiry %v", t1.Sub(t0), t2.Sub(t0), exp.Sub(t0))
	}
	ack := func(yiaddr string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithYourIP(net.ParseIP(yiaddr))}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, a := range []string{"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "169.254.1.1"} {
		if s := StateOf(ack(a)); s.Up || s.Address.IsValid() {
			t.Errorf("address %s: state %+v, want down", a, s)
		}
	}
	s := StateOf(ack("192.0.2.10",
		dhcpv4.WithNetmask(net.IPv4Mask(255, 0, 255, 0)),
		dhcpv4.WithRouter(net.IPv4zero),
		dhcpv4.WithDNS(net.ParseIP("127.0.0.1"), net.ParseIP("224.0.0.1"), net.ParseIP("192.0.2.53"),
			net.ParseIP("192.0.2.54"), net.ParseIP("192.0.2.55"), net.ParseIP("192.0.2.56"))))
	if !s.Up || s.Address.String() != "192.0.2.10/24" || s.Gateway.IsValid() ||
		fmt.Sprint(s.DNS) != "[192.0.2.53 192.0.2.54 192.0.2.55]" {
		t.Errorf("state %+v", s)
	}
}
