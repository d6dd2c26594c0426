package applier

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// applyWithin plans doc and applies it under confirmation.
func applyWithin(t *testing.T, a *Applier, doc string, within time.Duration) *Result {
	t.Helper()
	ctx := context.Background()
	p, err := a.Plan(ctx, sources(doc))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	res, err := a.ApplyWithin(ctx, p, "to confirm", "test", within)
	if err != nil {
		t.Fatalf("apply within %s: %v", within, err)
	}
	return res
}

func pending(t *testing.T, a *Applier) *PendingConfirm {
	t.Helper()
	p, err := a.PendingConfirm(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inForce fails unless doc is what the live state is: its plan changes
// nothing and records nothing.
func inForce(t *testing.T, a *Applier, doc, what string) {
	t.Helper()
	p, err := a.Plan(context.Background(), sources(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Engine.Empty() || p.NewVersion {
		t.Fatalf("%s is not in force: new version %v, changes %+v", what, p.NewVersion, p.Engine.Steps)
	}
}

func TestApplyWithinRefusals(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir(), &fakeReconciler{})
	apply(t, a, docV1, "v1")
	p, err := a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	// Nobody to roll back at the deadline: refused, nothing changed.
	if _, err := a.ApplyWithin(ctx, p, "m", "test", time.Minute); !errors.Is(err, ErrNoConfirmKeeper) {
		t.Fatalf("without a keeper: %v, want ErrNoConfirmKeeper", err)
	}
	a.KeepConfirmDeadlines()
	for _, d := range []time.Duration{0, -time.Second, 500 * time.Millisecond, 25 * time.Hour} {
		if _, err := a.ApplyWithin(ctx, p, "m", "test", d); err == nil || !strings.Contains(err.Error(), "confirm within") {
			t.Errorf("within %s: %v, want refused", d, err)
		}
	}
	// An apply that fails leaves nothing pending.
	failing := strings.Replace(docV2, "domains: [", "domains: [{name: fail.example}, ", 1)
	fp, err := a.Plan(ctx, sources(failing))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyWithin(ctx, fp, "m", "test", time.Minute); err == nil || !strings.Contains(err.Error(), "cannot apply") {
		t.Fatalf("failing apply: %v", err)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 || pending(t, a) != nil {
		t.Fatalf("after refusals: %d versions, pending %+v", len(hist), pending(t, a))
	}
	inForce(t, a, docV1, "version 1")

	// The first version has nothing to go back to.
	b := openTest(t, t.TempDir())
	b.KeepConfirmDeadlines()
	p1, err := b.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ApplyWithin(ctx, p1, "m", "test", time.Minute); err == nil || !strings.Contains(err.Error(), "first version") {
		t.Fatalf("first version within a minute: %v", err)
	}
	if hist, _ := b.History(ctx); len(hist) != 0 || pending(t, b) != nil {
		t.Fatalf("after refusing the first version: %d versions, pending %+v", len(hist), pending(t, b))
	}
}

func TestRollbackUnconfirmed(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	changed := a.KeepConfirmDeadlines()
	apply(t, a, docV1, "v1")
	before := time.Now()
	res := applyWithin(t, a, docV2, 3*time.Second)
	if res.Version != 2 || res.Pending == nil || res.Pending.Version != 2 || res.Pending.Previous != 1 || res.Pending.Within != "3s" {
		t.Fatalf("apply within 3s: %+v pending %+v", res, res.Pending)
	}
	dl := res.Pending.Deadline
	if dl.Before(before.Add(3*time.Second)) || dl.After(time.Now().Add(3*time.Second)) {
		t.Fatalf("deadline %s, want 3s after the apply", dl)
	}
	select {
	case <-changed:
	default:
		t.Fatal("the keeper was not told of the pending confirmation")
	}
	if got := pending(t, a); got == nil || *got != *res.Pending {
		t.Fatalf("pending %+v, want %+v", got, res.Pending)
	}
	inForce(t, a, docV2, "version 2")

	// Not due yet: nothing happens.
	if res, p, err := a.RollbackUnconfirmed(ctx, dl.Add(-time.Millisecond)); res != nil || p != nil || err != nil {
		t.Fatalf("rollback before the deadline: %+v %+v %v", res, p, err)
	}
	res, p, err := a.RollbackUnconfirmed(ctx, dl)
	if err != nil || p == nil || p.Version != 2 || res.Version != 3 {
		t.Fatalf("rollback at the deadline: %+v %+v %v", res, p, err)
	}
	hist, _ := a.History(ctx)
	if len(hist) != 3 || hist[2].Origin != store.OriginConfirmTimeout || hist[2].StateHash != hist[0].StateHash ||
		hist[2].Message != "version 2 not confirmed within 3s: version 1 applied again" {
		t.Fatalf("history after the rollback: %+v", hist)
	}
	inForce(t, a, docV1, "version 1 (alice gone, bob's name back)")
	if pending(t, a) != nil {
		t.Fatal("still pending after the rollback")
	}
	// Once rolled back, nothing more.
	if res, p, err := a.RollbackUnconfirmed(ctx, dl.Add(time.Hour)); res != nil || p != nil || err != nil {
		t.Fatalf("second rollback: %+v %+v %v", res, p, err)
	}
	if _, err := a.Confirm(ctx); !errors.Is(err, ErrNothingToConfirm) || !strings.Contains(err.Error(), "too late") {
		t.Fatalf("confirm after the rollback: %v, want too late", err)
	}
}

func TestConfirm(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	a.KeepConfirmDeadlines()
	if _, err := a.Confirm(ctx); !errors.Is(err, ErrNothingToConfirm) || strings.Contains(err.Error(), "too late") {
		t.Fatalf("confirm with nothing applied: %v", err)
	}
	apply(t, a, docV1, "v1")
	applyWithin(t, a, docV2, time.Minute)
	p, err := a.Confirm(ctx)
	if err != nil || p.Version != 2 || p.Previous != 1 {
		t.Fatalf("confirm: %+v %v", p, err)
	}
	if res, p, err := a.RollbackUnconfirmed(ctx, time.Now().Add(time.Hour)); res != nil || p != nil || err != nil {
		t.Fatalf("rollback after the confirmation: %+v %+v %v", res, p, err)
	}
	if hist, _ := a.History(ctx); len(hist) != 2 {
		t.Fatalf("history: %+v", hist)
	}
	inForce(t, a, docV2, "version 2")
	if _, err := a.Confirm(ctx); !errors.Is(err, ErrNothingToConfirm) {
		t.Fatalf("second confirm: %v", err)
	}

	// The pending confirmation is in the store: another applier on the
	// directory (a daemon after a restart) sees it.
	applyWithin(t, a, docV3, time.Minute)
	b := openTest(t, dir)
	if got := pending(t, b); got == nil || got.Version != 3 || got.Previous != 2 {
		t.Fatalf("pending seen by a second applier: %+v", got)
	}
	// Importing a history settles it.
	var buf bytes.Buffer
	if err := a.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if err := a.Import(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, a); got != nil {
		t.Fatalf("pending after an import: %+v", got)
	}
}

// TestApplyWithinAgainAndPlainApply: as a router's commit confirmed, a
// second apply under confirmation moves the deadline and keeps the
// version to go back to; a plain apply confirms.
func TestApplyWithinAgainAndPlainApply(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	a.KeepConfirmDeadlines()
	apply(t, a, docV1, "v1")
	first := applyWithin(t, a, docV2, time.Minute).Pending
	second := applyWithin(t, a, docV3, 2*time.Minute).Pending
	if second.Version != 3 || second.Previous != 1 || !second.Since.Equal(first.Since) || !second.Deadline.After(first.Deadline) || second.Within != "2m0s" {
		t.Fatalf("second apply within 2m: %+v (first %+v)", second, first)
	}
	// The same document again, under confirmation: no version, a new
	// deadline for the same one.
	p, err := a.Plan(ctx, sources(docV3))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.ApplyWithin(ctx, p, "again", "test", 3*time.Minute)
	if err != nil || res.Version != 0 || res.Pending == nil || res.Pending.Version != 3 || res.Pending.Within != "3m0s" {
		t.Fatalf("the same document within 3m: %+v %v", res, err)
	}
	// The rollback goes back past both to version 1.
	rolled, _, err := a.RollbackUnconfirmed(ctx, res.Pending.Deadline)
	if err != nil || rolled.Version != 4 {
		t.Fatalf("rollback: %+v %v", rolled, err)
	}
	inForce(t, a, docV1, "version 1")

	applyWithin(t, a, docV2, time.Minute)
	res = apply(t, a, docV3, "plain")
	if res.Confirmed != 5 || res.Pending != nil || pending(t, a) != nil {
		t.Fatalf("plain apply over a pending one: %+v, pending %+v", res, pending(t, a))
	}
}

// breakable is a reconciler that, once broken, plans a change and fails
// to apply it, whatever the document.
type breakable struct{ broken atomic.Bool }

func (b *breakable) Name() string   { return "breakable" }
func (b *breakable) Owns() []string { return nil }
func (b *breakable) Observe(context.Context) (reconcilers.Live, error) {
	return fakeLive(0), nil
}

func (b *breakable) Plan(context.Context, reconcilers.Live, *schema.State) ([]reconcilers.Change, error) {
	if b.broken.Load() {
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: "breakable"}}, nil
	}
	return nil, nil
}

func (b *breakable) Apply(context.Context, []reconcilers.Change) error {
	return errors.New("breakable: broken")
}

func TestRollbackUnconfirmedFailureStaysPending(t *testing.T) {
	ctx := context.Background()
	br := &breakable{}
	a := openTest(t, t.TempDir(), br)
	a.KeepConfirmDeadlines()
	apply(t, a, docV1, "v1")
	want := applyWithin(t, a, docV2, time.Second).Pending

	br.broken.Store(true)
	res, p, err := a.RollbackUnconfirmed(ctx, want.Deadline)
	if err == nil || !strings.Contains(err.Error(), "breakable: broken") || p == nil || res == nil || res.Version != 0 {
		t.Fatalf("failed rollback: %+v %+v %v", res, p, err)
	}
	if got := pending(t, a); got == nil || *got != *want {
		t.Fatalf("pending after a failed rollback: %+v, want %+v", got, want)
	}
	if hist, _ := a.History(ctx); len(hist) != 2 {
		t.Fatalf("a failed rollback recorded a version: %+v", hist)
	}

	br.broken.Store(false)
	if res, _, err := a.RollbackUnconfirmed(ctx, want.Deadline); err != nil || res.Version != 3 {
		t.Fatalf("rollback once repaired: %+v %v", res, err)
	}
	inForce(t, a, docV1, "version 1")
}

// TestRollbackAfterAnInterruptedApply: a pending confirmation written
// ahead of an apply that never recorded its version (a crash) still puts
// the previous version back.
func TestRollbackAfterAnInterruptedApply(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	apply(t, a, docV1, "v1")
	apply(t, a, docV2, "v2")
	// The crash: version 3's apply changed the live state (here, to
	// version 1's accounts) and wrote its pending confirmation, not its
	// version.
	if err := a.writePending(ctx, &PendingConfirm{Previous: 2, Within: "1m0s", Deadline: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.engine.Apply(ctx, p.Engine, nil); err != nil {
		t.Fatal(err)
	}
	res, _, err := a.RollbackUnconfirmed(ctx, time.Now())
	if err != nil || !res.Changed || res.Version != 0 {
		t.Fatalf("rollback: %+v %v", res, err)
	}
	inForce(t, a, docV2, "version 2")
	if pending(t, a) != nil {
		t.Fatal("still pending")
	}
}
