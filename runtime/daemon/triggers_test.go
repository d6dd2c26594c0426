package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/schema"
)

var linkAddress = reconcilers.NewFact[string]("test-link-address")

// link is a fake network link that watches its own events and publishes
// its address.
type link struct {
	addr   atomic.Value // string
	events chan struct{}
}

type linkLive string

func (l linkLive) Fingerprint() string { return string(l) }

func (l *link) Name() string   { return "link" }
func (l *link) Owns() []string { return nil }
func (l *link) Observe(context.Context) (reconcilers.Live, error) {
	return linkLive(l.addr.Load().(string)), nil
}

func (l *link) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	return nil, nil
}
func (l *link) Apply(context.Context, []reconcilers.Change) error { return nil }
func (l *link) Publishes() []reconcilers.FactKey                  { return []reconcilers.FactKey{linkAddress} }
func (l *link) Facts(live reconcilers.Live, _ []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	reconcilers.Publish(&fs, linkAddress, string(live.(linkLive)))
	return fs
}

func (l *link) Watch(ctx context.Context, notify func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.events:
			notify()
		}
	}
}

// pointer is a fake DNS record that points at the link's address.
type pointer struct{ value atomic.Value }

type pointerLive string

func (p pointerLive) Fingerprint() string { return string(p) }

func (p *pointer) Name() string                 { return "pointer" }
func (p *pointer) Owns() []string               { return nil }
func (p *pointer) Reads() []reconcilers.FactKey { return []reconcilers.FactKey{linkAddress} }
func (p *pointer) Observe(context.Context) (reconcilers.Live, error) {
	return pointerLive(p.value.Load().(string)), nil
}

func (p *pointer) Plan(ctx context.Context, live reconcilers.Live, _ *schema.State) ([]reconcilers.Change, error) {
	addr, _, err := reconcilers.Read(ctx, linkAddress)
	if err != nil || string(live.(pointerLive)) == addr {
		return nil, err
	}
	return []reconcilers.Change{{Op: reconcilers.Update, Resource: "pointer", Detail: addr, Payload: addr}}, nil
}

func (p *pointer) Apply(_ context.Context, changes []reconcilers.Change) error {
	p.value.Store(changes[0].Payload.(string))
	return nil
}

// planned records which reconcilers the engine plans.
type planned struct {
	mu    sync.Mutex
	names []string
}

func (p *planned) Planned(r string, _ time.Duration, _ int, _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, r)
}
func (p *planned) Applied(string, time.Duration, int, error) {}

func (p *planned) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.names
	p.names = nil
	return n
}

// A link event re-runs the link and the record that reads its address,
// in the running daemon, and not the rest of the box: the accounts'
// drift stays until the periodic resync (disabled here).
func TestDaemonRunsWhatATriggerConcerns(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &link{events: make(chan struct{})}
	l.addr.Store("192.0.2.1")
	p := &pointer{}
	p.value.Store("")
	obs := &planned{}
	r := startDaemonWith(t, filepath.Join(dir, "data"), state, -1, []applier.Option{
		applier.WithObserver(obs),
		applier.WithReconcilers(reconcilers.Spec{Reconciler: p}, reconcilers.Spec{Reconciler: l}),
	}, nil)
	waitVersions(t, r, 1)
	waitFor(t, "the record applied", func() bool { return p.value.Load() == "192.0.2.1" })

	ctx := context.Background()
	db := r.app.Store().DB()
	if _, err := db.ExecContext(ctx, "UPDATE accounts SET name = 'drifted' WHERE domain = 'a.example' AND id = 'bob'"); err != nil {
		t.Fatal(err)
	}
	obs.take()

	l.addr.Store("192.0.2.2") // a new lease
	for range 3 {
		l.events <- struct{}{}
	}
	waitFor(t, "the record following the link", func() bool { return p.value.Load() == "192.0.2.2" })
	waitFor(t, "the trigger logged", func() bool { return r.logs.count("reconcilers asked to run again") > 0 })

	if got := slices.Compact(slices.Sorted(slices.Values(obs.take()))); !slices.Equal(got, []string{"link", "pointer"}) {
		t.Errorf("planned %q after the event, want link and pointer only", got)
	}
	var n string
	if err := db.QueryRowContext(ctx, "SELECT name FROM accounts WHERE domain = 'a.example' AND id = 'bob'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != "drifted" {
		t.Errorf("the accounts were resynced by a link event")
	}
	// The status keeps the others' entries, and has the pointer's.
	var got []string
	for _, s := range r.d.Status().Reconcilers {
		got = append(got, s.Reconciler+": "+s.State)
	}
	if want := []string{"accounts: changed", "mail: changed", "network: changed", "firewall: skipped", "dns: changed", "dhcp: skipped", "link: in sync", "pointer: changed"}; !slices.Equal(got, want) {
		t.Errorf("status %q, want %q", got, want)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
