package network

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
	"mailfountain.dev/mailfountain/schema/schematest"
)

// fakeHost is a host whose route address and resolvers a test moves.
type fakeHost struct {
	mu    sync.Mutex
	route netip.Addr
	res   []netip.Addr
}

func (f *fakeHost) host() Host {
	return Host{
		RouteAddress: func(context.Context) (netip.Addr, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.route.IsValid() {
				return netip.Addr{}, errors.New("no route")
			}
			return f.route, nil
		},
		Resolvers: func() ([]netip.Addr, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return slices.Clone(f.res), nil
		},
	}
}

func (f *fakeHost) set(route string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.route = netip.MustParseAddr(route)
}

// reader reads the network's facts, as the DNS reconciler does.
type reader struct {
	mu  sync.Mutex
	got map[string]string
}

// facts is what the reader's latest plan read.
func (r *reader) facts() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

type none struct{}

func (none) Fingerprint() string { return "" }

func (r *reader) Name() string   { return "reader" }
func (r *reader) Owns() []string { return nil }
func (r *reader) Reads() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.PublicAddress, facts.UpstreamResolvers, facts.LANAddress}
}
func (r *reader) Observe(context.Context) (reconcilers.Live, error) { return none{}, nil }
func (r *reader) Plan(ctx context.Context, _ reconcilers.Live, _ *schema.State) ([]reconcilers.Change, error) {
	a, ak, err := reconcilers.Read(ctx, facts.PublicAddress)
	if err != nil {
		return nil, err
	}
	u, uk, _ := reconcilers.Read(ctx, facts.UpstreamResolvers)
	l, lk, _ := reconcilers.Read(ctx, facts.LANAddress)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = map[string]string{"public": reconcilers.Show(a.String(), ak), "upstreams": reconcilers.Show(u, uk), "lan": reconcilers.Show(l.String(), lk)}
	return nil, nil
}
func (r *reader) Apply(context.Context, []reconcilers.Change) error { return nil }

func TestFacts(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fh := &fakeHost{route: netip.MustParseAddr("192.0.2.2"), res: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	net := New(st, fh.host(), Config{}, nil)
	rd := &reader{}
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: rd}, reconcilers.Spec{Reconciler: net})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		plan      []string
		want      map[string]string
	}{
		{
			name: "router, dhcp WAN, no public address",
			doc:  "system: {model: virtual}\n",
			plan: []string{"~ network settings (lan address none → 192.168.1.1/24)"},
			want: map[string]string{"public": "192.0.2.2", "upstreams": "[192.0.2.53]", "lan": "192.168.1.1/24"},
		},
		{
			name: "the document's public address",
			doc:  "system: {model: virtual}\nnetwork: {public_address: \"2001:db8::7\"}\n",
			plan: []string{"~ network settings (public address the default route's → 2001:db8::7)"},
			want: map[string]string{"public": "2001:db8::7", "upstreams": "[192.0.2.53]", "lan": "192.168.1.1/24"},
		},
		{
			name: "server mode, static WAN",
			doc:  "system: {model: virtual}\nnetwork: {mode: server, wan: {method: static, address: 203.0.113.5/24, gateway: 203.0.113.1, dns: [203.0.113.1, 9.9.9.9]}, dhcp: {enabled: false}}\n",
			plan: []string{"~ network settings (public address 2001:db8::7 → the default route's, upstream resolvers the host's → [203.0.113.1 9.9.9.9], lan address 192.168.1.1/24 → none)"},
			want: map[string]string{"public": "192.0.2.2", "upstreams": "[203.0.113.1 9.9.9.9]", "lan": "invalid Prefix"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := schematest.Load(t, tc.doc)
			p, err := e.Plan(ctx, doc)
			if err != nil {
				t.Fatal(err)
			}
			var shown []string
			for _, s := range p.Steps {
				for _, c := range s.Changes {
					shown = append(shown, c.String())
				}
			}
			if !slices.Equal(shown, tc.plan) {
				t.Errorf("plan %q, want %q", shown, tc.plan)
			}
			// The reader was planned with the facts the plan will make.
			if !mapsEqual(rd.got, tc.want) {
				t.Errorf("facts %v, want %v", rd.got, tc.want)
			}
			if _, err := e.Apply(ctx, p, nil); err != nil {
				t.Fatal(err)
			}
			if p, err := e.Plan(ctx, doc); err != nil || !p.Empty() || !mapsEqual(rd.got, tc.want) {
				t.Fatalf("after apply: %v %+v, facts %v", err, p, rd.got)
			}
		})
	}

	// The route address moves: no change of the network's, a new fact.
	fh.set("192.0.2.99")
	p, err := e.Plan(ctx, schematest.Load(t, "system: {model: virtual}\nnetwork: {mode: server, wan: {method: static, address: 203.0.113.5/24, gateway: 203.0.113.1, dns: [203.0.113.1, 9.9.9.9]}, dhcp: {enabled: false}}\n"))
	if err != nil || !p.Empty() || rd.got["public"] != "192.0.2.99" {
		t.Fatalf("after the route moved: %v %+v %v", err, p, rd.got)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Watch notifies when the route address moves, and not otherwise.
func TestWatch(t *testing.T) {
	fh := &fakeHost{route: netip.MustParseAddr("192.0.2.2")}
	r := New(nil, fh.host(), Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan struct{}, 10)
	done := make(chan error)
	go func() { done <- r.watch(ctx, 5*time.Millisecond, func() { notified <- struct{}{} }) }()
	select {
	case <-notified:
		t.Fatal("notified with nothing moved")
	case <-time.After(100 * time.Millisecond):
	}
	fh.set("192.0.2.3")
	select {
	case <-notified:
	case <-time.After(10 * time.Second):
		t.Fatal("not notified of the move")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOwnsAndReads(t *testing.T) {
	r := New(nil, Host{}, Config{}, nil)
	if got := strings.Join(r.Owns(), " "); got != "network.mode network.wan network.lan.address network.public_address" {
		t.Errorf("owns %q", got)
	}
	// Without box hardware its netlink part is skipped, and only it.
	if why := r.SkipReason(); why != reconcilers.ReasonNoHardware {
		t.Errorf("skip reason %q", why)
	}
	if got := strings.Join(r.SkippedFields(), " "); got != "network.mode network.wan network.lan.address" {
		t.Errorf("skipped fields %q", got)
	}
	if why := New(nil, Host{}, Config{Ports: &Ports{WAN: "wan"}}, nil).SkipReason(); why != "" {
		t.Errorf("with ports: skip reason %q", why)
	}
}

// TestWANStatusNoHardware: off a box there is no WAN to show, applied
// or not.
func TestWANStatusNoHardware(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := &fakeHost{route: netip.MustParseAddr("192.0.2.7")}
	r := New(st, h.host(), Config{}, nil)
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: r})
	if err != nil {
		t.Fatal(err)
	}
	doc := schematest.Load(t, "network: {wan: {method: static, address: 203.0.113.5/24, gateway: 203.0.113.1, dns: [203.0.113.53]}}\n")
	p, err := e.Plan(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	if s, ok := r.WANStatus(); ok {
		t.Errorf("WAN status without box hardware: %+v", s)
	}
}
