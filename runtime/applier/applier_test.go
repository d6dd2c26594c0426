package applier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Documents of a small company across three edits.
const (
	docV1 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains: [{name: a.example, accounts: [{id: bob}]}]
`
	// docV1 again, written differently: the same state.
	docV1Reformatted = `# the same company
system:
  model: M500
network:
  mode: router
  wan: {method: dhcp}
smtp: {mode: direct}
domains:
  - name: A.EXAMPLE
    accounts:
      - id: Bob
`
	docV2 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains: [{name: a.example, accounts: [{id: bob, name: Bob Martin, aliases: [robert]}, {id: alice}]}]
`
	docV3 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains: [{name: a.example, accounts: [{id: alice}, {id: carol}]}]
`
	docInvalid = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains: [{name: a.example, accounts: [{id: "Bad Name"}]}]
`
)

func sources(doc string) []schema.Source {
	return []schema.Source{{Name: "/etc/mailfountain/state.yaml", Data: []byte(doc), Mode: 0o600}}
}

func openTest(t *testing.T, dir string, extra ...reconcilers.Reconciler) *Applier {
	t.Helper()
	specs := make([]reconcilers.Spec, len(extra))
	for i, r := range extra {
		specs[i] = reconcilers.Spec{Reconciler: r}
	}
	a, err := Open(context.Background(), dir, nil, WithReconcilers(specs...))
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// apply plans doc and applies it, failing the test on any error.
func apply(t *testing.T, a *Applier, doc, message string) *Result {
	t.Helper()
	ctx := context.Background()
	p, err := a.Plan(ctx, sources(doc))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	res, err := a.Apply(ctx, p, message, "test")
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func TestApplyRecordsAVersionOnlyForChange(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())

	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	if p.Engine.Empty() || !p.NewVersion || p.BaseVersion != 0 || len(p.StateHash) != 64 {
		t.Fatalf("first plan: empty=%v new=%v base=%d hash=%q", p.Engine.Empty(), p.NewVersion, p.BaseVersion, p.StateHash)
	}
	res, err := a.Apply(ctx, p, "first", "cli")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 1 || !res.Changed {
		t.Fatalf("first apply: %+v", res)
	}

	for _, doc := range []string{docV1, docV1Reformatted} {
		p, err := a.Plan(ctx, sources(doc))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Engine.Empty() || p.NewVersion || p.BaseVersion != 1 {
			t.Fatalf("plan of the applied document: empty=%v new=%v base=%d: %+v", p.Engine.Empty(), p.NewVersion, p.BaseVersion, p.Engine.Steps)
		}
		res, err := a.Apply(ctx, p, "again", "cli")
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != 0 || res.Changed {
			t.Fatalf("apply of the applied document: %+v", res)
		}
	}
	hist, err := a.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].N != 1 || hist[0].Message != "first" || hist[0].Origin != "cli" || hist[0].StateHash != p.StateHash {
		t.Fatalf("history: %+v", hist)
	}
}

func TestPlanInvalidDocument(t *testing.T) {
	a := openTest(t, t.TempDir())
	_, err := a.Plan(context.Background(), sources(docInvalid))
	var errs schema.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("plan of an invalid document: %v, want schema.Errors", err)
	}
	if errs[0].File != "/etc/mailfountain/state.yaml" || errs[0].Line != 4 {
		t.Errorf("error not positioned in the document: %+v", errs[0])
	}
	if hist, _ := a.History(context.Background()); len(hist) != 0 {
		t.Errorf("history after an invalid plan: %+v", hist)
	}
}

func TestHistoryShowDiffRollback(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	apply(t, a, docV1, "bob")
	apply(t, a, docV2, "alice arrives")
	apply(t, a, docV3, "bob leaves, carol arrives")

	hist, err := a.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range hist {
		got = append(got, fmt.Sprintf("%d %s", v.N, v.Message))
	}
	if want := "1 bob|2 alice arrives|3 bob leaves, carol arrives"; strings.Join(got, "|") != want {
		t.Fatalf("history %q, want %q", strings.Join(got, "|"), want)
	}

	v2, err := a.Show(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(v2.Sources) != 1 || string(v2.Sources[0].Data) != docV2 || v2.Sources[0].Name != "/etc/mailfountain/state.yaml" {
		t.Fatalf("show 2 sources: %+v", v2.Sources)
	}
	if !strings.Contains(string(v2.State), `"alice"`) {
		t.Fatalf("show 2 state lacks alice: %s", v2.State)
	}
	if _, err := a.Show(ctx, 9); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("show 9: %v, want store.ErrNotFound", err)
	}

	diffs := []struct {
		n, m int
		want []string // "op kind name"
	}{
		{1, 2, []string{"+ account alice@a.example", "~ account bob@a.example", "+ alias robert@a.example"}},
		{2, 3, []string{"- account bob@a.example", "+ account carol@a.example", "- alias robert@a.example"}},
		{1, 0, []string{"+ account alice@a.example", "- account bob@a.example", "+ account carol@a.example"}},
		{3, 3, nil},
	}
	for _, d := range diffs {
		changes, err := a.Diff(ctx, d.n, d.m)
		if err != nil {
			t.Fatalf("diff %d %d: %v", d.n, d.m, err)
		}
		var got []string
		for _, c := range changes {
			got = append(got, c.Op+" "+c.Kind+" "+c.Name)
		}
		for _, w := range d.want {
			if !contains(got, w) {
				t.Errorf("diff %d %d = %q, lacks %q", d.n, d.m, got, w)
			}
		}
		if d.want == nil && len(got) != 0 {
			t.Errorf("diff %d %d = %q, want none", d.n, d.m, got)
		}
	}
	if _, err := a.Diff(ctx, 1, 7); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("diff 1 7: %v, want store.ErrNotFound", err)
	}

	p, err := a.PlanRollback(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin != OriginRollback || !p.NewVersion || p.Engine.Empty() || p.BaseVersion != 3 {
		t.Fatalf("rollback plan: origin=%q new=%v empty=%v base=%d", p.Origin, p.NewVersion, p.Engine.Empty(), p.BaseVersion)
	}
	res, err := a.Apply(ctx, p, "back to bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 4 {
		t.Fatalf("rollback recorded version %d, want 4", res.Version)
	}
	v4, err := a.Show(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if v4.Origin != OriginRollback || string(v4.Sources[0].Data) != docV1 {
		t.Fatalf("version 4: origin %q, document %q", v4.Origin, v4.Sources[0].Data)
	}
	if changes, err := a.Diff(ctx, 1, 4); err != nil || len(changes) != 0 {
		t.Fatalf("diff 1 4 after rollback: %v %+v", err, changes)
	}
	// Live is version 1 again.
	if p, err := a.Plan(ctx, sources(docV1)); err != nil || !p.Engine.Empty() || p.NewVersion {
		t.Fatalf("plan of version 1 after rollback: %v, %+v", err, p)
	}
	if _, err := a.PlanRollback(ctx, 42); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rollback 42: %v, want store.ErrNotFound", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPlanFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	apply(t, a, docV1, "v1")

	p, err := a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v2.plan")
	if err := a.WritePlanFile(p, path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plan file mode: %v %v", fi.Mode(), err)
	}
	read, err := a.ReadPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if read.BaseVersion != 1 || read.StateHash != p.StateHash || !read.NewVersion || read.State == nil ||
		planDifference(p.Engine, read.Engine) != "" || string(read.Sources[0].Data) != docV2 || read.Sources[0].Mode != 0o600 {
		t.Fatalf("plan read back differs: %+v", read)
	}
	if err := a.Verify(ctx, read); err != nil {
		t.Fatalf("verify fresh plan file: %v", err)
	}

	// Another applier (another mfapply) applies something else first.
	b := openTest(t, dir)
	apply(t, b, docV3, "v3 from elsewhere")

	read, err = a.ReadPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx, read); !errors.Is(err, ErrStale) {
		t.Fatalf("verify stale plan: %v, want ErrStale", err)
	}
	if _, err := a.Apply(ctx, read, "stale", "cli"); !errors.Is(err, ErrStale) {
		t.Fatalf("apply stale plan: %v, want ErrStale", err)
	}
	if hist, _ := a.History(ctx); len(hist) != 2 {
		t.Fatalf("a stale apply changed history: %+v", hist)
	}
	if p, err := a.Plan(ctx, sources(docV3)); err != nil || !p.Engine.Empty() {
		t.Fatalf("a stale apply changed the live state: %v %+v", err, p)
	}

	// A plan file whose documents were edited after planning.
	p, err = a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WritePlanFile(p, path); err != nil {
		t.Fatal(err)
	}
	edited := p
	edited.Sources = sources(docV1)
	b2, err := a.MarshalPlan(edited)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UnmarshalPlan(b2); !errors.Is(err, ErrStale) {
		t.Fatalf("plan with edited documents: %v, want ErrStale", err)
	}
	// A plan made for another data directory.
	other := openTest(t, t.TempDir())
	if _, err := other.ReadPlanFile(path); err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Fatalf("plan of another data directory: %v", err)
	}
	// Not a plan.
	os.WriteFile(path, []byte(`{"format":"something-else"}`), 0o600)
	if _, err := a.ReadPlanFile(path); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("not a plan: %v", err)
	}
}

// fakeReconciler is a second reconciler whose live state a test sets, and
// that fails to apply a domain named fail.example.
type fakeReconciler struct {
	live atomic.Int64
}

type fakeLive int64

func (l fakeLive) Fingerprint() string { return fmt.Sprint(int64(l)) }

func (f *fakeReconciler) Name() string { return "fake" }

// Owns: a fake converges no field of the document.
func (f *fakeReconciler) Owns() []string { return nil }

func (f *fakeReconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	return fakeLive(f.live.Load()), nil
}

func (f *fakeReconciler) Plan(ctx context.Context, live reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	for _, d := range desired.Domains {
		if d.Name == "fail.example" {
			return []reconcilers.Change{{Op: reconcilers.Create, Resource: "fake " + d.Name}}, nil
		}
	}
	return nil, nil
}

func (f *fakeReconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	if len(changes) > 0 {
		return errors.New("fake: cannot apply " + changes[0].Resource)
	}
	return nil
}

func TestApplyStaleWhenLiveMoved(t *testing.T) {
	ctx := context.Background()
	fake := &fakeReconciler{}
	a := openTest(t, t.TempDir(), fake)
	apply(t, a, docV1, "v1")
	p, err := a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	fake.live.Store(7) // the live state drifts between plan and apply
	if _, err := a.Apply(ctx, p, "v2", "cli"); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "fake") {
		t.Fatalf("apply after the live state moved: %v, want ErrStale naming fake", err)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("history after a stale apply: %+v", hist)
	}

	// A version recorded in between that changes nothing any reconciler
	// observes (only the hostname): the fingerprints are the same, but
	// applying would silently undo that version.
	fake.live.Store(0)
	p, err = a.Plan(ctx, sources(docV2))
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(docV1, "{model: M500}", "{model: M500, hostname: other}", 1)
	if res := apply(t, a, renamed, "hostname"); res.Version != 2 {
		t.Fatalf("hostname change recorded version %d, want 2", res.Version)
	}
	if _, err := a.Apply(ctx, p, "v2", "cli"); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "planned against version 1, latest is 2") {
		t.Fatalf("apply after another version: %v, want ErrStale naming the versions", err)
	}
}

func TestApplyFailureRecordsNothing(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir(), &fakeReconciler{})
	apply(t, a, docV1, "v1")

	failing := strings.Replace(docV2, "domains: [", "domains: [{name: fail.example}, ", 1)
	p, err := a.Plan(ctx, sources(failing))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Apply(ctx, p, "breaks", "cli")
	if err == nil || !strings.Contains(err.Error(), "cannot apply fake fail.example") {
		t.Fatalf("apply: %v, want the fake reconciler's error", err)
	}
	if res == nil || len(res.Statuses) == 0 || res.Version != 0 {
		t.Fatalf("result of a failed apply: %+v", res)
	}
	var failed bool
	for _, s := range res.Statuses {
		if s.Reconciler == "fake" && s.Error != "" {
			failed = true
		}
	}
	if !failed {
		t.Fatalf("statuses do not show fake failing: %+v", res.Statuses)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("history after a failed apply: %+v", hist)
	}
	// The engine put the accounts back to version 1.
	if p, err := a.Plan(ctx, sources(docV1)); err != nil || !p.Engine.Empty() || p.NewVersion {
		t.Fatalf("plan of version 1 after the failed apply: %v %+v", err, p.Engine)
	}
}

func TestResync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)
	if res, err := a.Resync(ctx); err != nil || res.Changed || res.Version != 0 {
		t.Fatalf("resync with no version: %+v %v", res, err)
	}
	apply(t, a, docV2, "v2")
	if res, err := a.Resync(ctx); err != nil || res.Changed {
		t.Fatalf("resync in sync: %+v %v", res, err)
	}
	// Drift: the live store is changed behind the applier's back, here by
	// applying another document's accounts through a second engine-only
	// path (the reconciler itself), without a version.
	b := openTest(t, dir)
	drift, err := b.Plan(ctx, sources(docV3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.Apply(ctx, drift.Engine, nil); err != nil {
		t.Fatal(err)
	}
	res, err := a.Resync(ctx)
	if err != nil || !res.Changed || res.Version != 0 {
		t.Fatalf("resync after drift: %+v %v", res, err)
	}
	if p, err := a.Plan(ctx, sources(docV2)); err != nil || !p.Engine.Empty() {
		t.Fatalf("after resync, live is not version 1: %v %+v", err, p.Engine)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("resync recorded a version: %+v", hist)
	}
}

func TestLockContentionGoroutines(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, dir)
	b := openTest(t, dir)
	ctx := context.Background()

	unlock, err := a.lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Apply(short, p, "waits", "cli")
	if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), filepath.Join(b.Dir(), "apply.lock")) {
		t.Fatalf("apply while locked: %v, want ErrLocked naming the lock", err)
	}
	if d := time.Since(start); d < 140*time.Millisecond {
		t.Fatalf("gave up after %v, before the deadline", d)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("held by pid %d", os.Getpid())) {
		t.Errorf("error does not name the holder: %v", err)
	}

	// A waiter gets the lock once it is released.
	done := make(chan error, 1)
	go func() {
		_, err := b.Apply(ctx, p, "waited", "cli")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("apply after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("apply still waiting 5s after release")
	}
}

func TestConcurrentAppliesOfOnePlan(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.Apply(ctx, p, fmt.Sprint("apply ", i), "cli")
		}()
	}
	wg.Wait()
	var ok, stale int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrStale):
			stale++
		default:
			t.Errorf("concurrent apply: %v", err)
		}
	}
	if ok != 1 || stale != 3 {
		t.Fatalf("%d applied, %d stale; want 1 and 3", ok, stale)
	}
	if hist, _ := a.History(ctx); len(hist) != 1 {
		t.Fatalf("history: %+v", hist)
	}
}
