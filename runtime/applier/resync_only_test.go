package applier

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

func statusNames(ss []reconcilers.Status) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Reconciler+": "+s.State)
	}
	return out
}

// ResyncOnly corrects the drift of the reconcilers it is given, and
// leaves the others' as it is.
func TestResyncOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	if res, err := a.ResyncOnly(ctx, []string{"accounts"}); err != nil || res.Changed {
		t.Fatalf("resync with no version: %+v %v", res, err)
	}
	apply(t, a, docV2, "v2")

	// The accounts drift, behind the applier's back.
	b := openTest(t, dir)
	drift, err := b.Plan(ctx, sources(docV3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.Apply(ctx, drift.Engine, nil); err != nil {
		t.Fatal(err)
	}

	res, err := a.ResyncOnly(ctx, []string{"mail"})
	if err != nil || res.Changed {
		t.Fatalf("resync of mail: %+v %v", res, err)
	}
	// The DNS reconciler reads mail's facts (the DKIM keys): it runs too.
	if got, want := statusNames(res.Statuses), []string{"mail: in sync", "dns: in sync"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	if p, err := a.Plan(ctx, sources(docV2)); err != nil || p.Engine.Empty() {
		t.Fatalf("resyncing mail corrected the accounts: %v %+v", err, p.Engine)
	}

	res, err = a.ResyncOnly(ctx, []string{"accounts"})
	if err != nil || !res.Changed || res.Version != 0 {
		t.Fatalf("resync of accounts: %+v %v", res, err)
	}
	if got, want := statusNames(res.Statuses), []string{"accounts: changed"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	if p, err := a.Plan(ctx, sources(docV2)); err != nil || !p.Engine.Empty() {
		t.Fatalf("after resync, live is not version 1: %v %+v", err, p.Engine)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("resync recorded a version: %+v", hist)
	}

	if _, err := a.ResyncOnly(ctx, []string{"nonesuch"}); err == nil || !strings.Contains(err.Error(), `no reconciler "nonesuch"`) {
		t.Fatalf("resync of an unknown reconciler: %v", err)
	}
}

var wanAddress = reconcilers.NewFact[string]("test-wan-address")

// wan publishes an address that its fingerprint does not show, as a link
// whose lease renews without the link changing.
type wan struct{ addr atomic.Value }

type wanLive string

func (wanLive) Fingerprint() string { return "up" }

func (w *wan) Name() string   { return "wan" }
func (w *wan) Owns() []string { return nil }
func (w *wan) Observe(context.Context) (reconcilers.Live, error) {
	return wanLive(w.addr.Load().(string)), nil
}

func (w *wan) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	return nil, nil
}
func (w *wan) Apply(context.Context, []reconcilers.Change) error { return nil }
func (w *wan) Publishes() []reconcilers.FactKey                  { return []reconcilers.FactKey{wanAddress} }
func (w *wan) Facts(live reconcilers.Live, _ []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	reconcilers.Publish(&fs, wanAddress, string(live.(wanLive)))
	return fs
}

// record publishes the WAN address, in a record of its own.
type record struct{ value atomic.Value }

type recordLive string

func (l recordLive) Fingerprint() string { return string(l) }

func (r *record) Name() string                 { return "record" }
func (r *record) Owns() []string               { return nil }
func (r *record) Reads() []reconcilers.FactKey { return []reconcilers.FactKey{wanAddress} }
func (r *record) Observe(context.Context) (reconcilers.Live, error) {
	return recordLive(r.value.Load().(string)), nil
}

func (r *record) Plan(ctx context.Context, live reconcilers.Live, _ *schema.State) ([]reconcilers.Change, error) {
	addr, known, err := reconcilers.Read(ctx, wanAddress)
	if err != nil {
		return nil, err
	}
	if known && string(live.(recordLive)) == addr {
		return nil, nil
	}
	return []reconcilers.Change{{Op: reconcilers.Update, Resource: "record", Detail: reconcilers.Show(addr, known), Payload: addr}}, nil
}

func (r *record) Apply(_ context.Context, changes []reconcilers.Change) error {
	r.value.Store(changes[0].Payload.(string))
	return nil
}

// A plan whose reader read a fact that moved since is stale, though no
// reconciler's live state moved.
func TestApplyStaleWhenAFactMoved(t *testing.T) {
	ctx := context.Background()
	w, r := &wan{}, &record{}
	w.addr.Store("192.0.2.1")
	r.value.Store("")
	a := openTest(t, t.TempDir(), r, w)
	if got := a.engine.Order(); !slices.Equal(got, []string{"accounts", "mail", "network", "firewall", "dns", "dhcp", "wan", "record"}) {
		t.Fatalf("order %q", got)
	}
	apply(t, a, docV1, "v1")
	if got := r.value.Load(); got != "192.0.2.1" {
		t.Fatalf("record %q", got)
	}
	p, err := a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	w.addr.Store("192.0.2.2")
	_, err = a.Apply(ctx, p, "v2", "cli")
	if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "a fact that record reads changed") {
		t.Fatalf("apply after the fact moved: %v, want ErrStale naming record's facts", err)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("history after a stale apply: %+v", hist)
	}
}

// WithObserver's Observer hears of the registry's reconcilers.
func TestOpenWithObserver(t *testing.T) {
	obs := &heard{}
	a, err := Open(context.Background(), t.TempDir(), nil, WithObserver(obs), WithReconcilers(reconcilers.Spec{Reconciler: &fakeReconciler{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	apply(t, a, docV1, "v1")
	// The DNS reconciler is planned again once the facts it reads (the
	// DKIM keys made by mail) are known.
	want := []string{"planned accounts", "planned mail", "planned network", "planned firewall", "planned dns", "planned dhcp", "planned fake",
		"planned accounts", "planned mail", "planned network", "planned firewall", "planned dns", "planned dhcp", "planned fake",
		"applied accounts", "applied mail", "applied network", "planned dns", "applied dns"}
	if got := obs.names(); !slices.Equal(got, want) {
		t.Fatalf("observer heard %q, want %q", got, want)
	}
}

type heard struct {
	mu    sync.Mutex
	lines []string
}

func (h *heard) Planned(r string, _ time.Duration, _ int, _ error) { h.add("planned " + r) }
func (h *heard) Applied(r string, _ time.Duration, _ int, _ error) { h.add("applied " + r) }
func (h *heard) add(l string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, l)
}

func (h *heard) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lines)
}
