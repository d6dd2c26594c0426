package reconcilers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/accounts"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// journal records what fake reconcilers did, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, fmt.Sprintf(format, args...))
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	l := j.lines
	j.lines = nil
	return l
}

// fake is a reconciler whose whole live state is one word, the version of
// the document (its hostname) last applied to it.
type fake struct {
	name    string
	j       *journal
	live    string
	failOn  string // Apply fails when asked to reach this version…
	partial bool   // …after reaching a state of its own ("half")
	during  func() // called inside Apply
}

type fakeLive string

func (l fakeLive) Fingerprint() string { return "fp-" + string(l) }

func (f *fake) Name() string { return f.name }

// Owns: a fake converges no field of the document.
func (f *fake) Owns() []string { return nil }

func (f *fake) Observe(ctx context.Context) (reconcilers.Live, error) {
	f.j.add("observe %s", f.name)
	if f.live == "unobservable" {
		return nil, errors.New("cannot look")
	}
	return fakeLive(f.live), nil
}

func (f *fake) Plan(ctx context.Context, live reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	want := desired.System.Hostname
	if string(live.(fakeLive)) == want {
		return nil, nil
	}
	return []reconcilers.Change{{Op: reconcilers.Update, Resource: f.name + " " + want, Payload: want}}, nil
}

func (f *fake) Apply(ctx context.Context, changes []reconcilers.Change) error {
	want := changes[0].Payload.(string)
	f.j.add("apply %s %s", f.name, want)
	if f.during != nil {
		f.during()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if want == f.failOn {
		if f.partial {
			f.live = "half"
		}
		return fmt.Errorf("%s cannot reach %s", f.name, want)
	}
	f.live = want
	return nil
}

func doc(version string) *schema.State {
	return &schema.State{System: schema.System{Hostname: version}}
}

func fakes(j *journal, names ...string) []*fake {
	fs := make([]*fake, len(names))
	for i, n := range names {
		fs[i] = &fake{name: n, j: j, live: "v1"}
	}
	return fs
}

func engineOf(fs []*fake) *reconcilers.Engine {
	rs := make([]reconcilers.Reconciler, len(fs))
	for i, f := range fs {
		rs[i] = f
	}
	return reconcilers.NewEngine(rs...)
}

func states(ss []reconcilers.Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Reconciler + ": " + s.State
	}
	return out
}

func lives(fs []*fake) string {
	var l []string
	for _, f := range fs {
		l = append(l, f.live)
	}
	return strings.Join(l, " ")
}

func TestEnginePlansAndAppliesInOrder(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	fs := fakes(j, "network", "firewall", "dns", "mail")
	fs[1].live = "v2" // already there
	e := engineOf(fs)

	p, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.take(), []string{"observe network", "observe firewall", "observe dns", "observe mail"}; !slices.Equal(got, want) {
		t.Fatalf("plan: %q, want %q", got, want)
	}
	if p.Empty() {
		t.Fatal("plan is empty")
	}
	if fp := p.Fingerprints(); len(fp) != 4 || fp["network"] != "fp-v1" || fp["firewall"] != "fp-v2" {
		t.Fatalf("fingerprints %v", fp)
	}
	if len(p.Steps[1].Changes) != 0 || p.Steps[3].Changes[0].String() != "~ mail v2" {
		t.Fatalf("steps %+v", p.Steps)
	}

	ss, err := e.Apply(ctx, p, doc("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.take(), []string{"apply network v2", "apply dns v2", "apply mail v2"}; !slices.Equal(got, want) {
		t.Fatalf("apply: %q, want %q (firewall has nothing to do)", got, want)
	}
	if got, want := states(ss), []string{"network: changed", "firewall: in sync", "dns: changed", "mail: changed"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	if ss[0].Changes != 1 || ss[1].Changes != 0 || ss[0].Error != "" {
		t.Fatalf("statuses %+v", ss)
	}

	// Planned again: nothing to do, and applying it touches nothing.
	p, err = e.Plan(ctx, doc("v2"))
	if err != nil || !p.Empty() {
		t.Fatalf("second plan: %+v, %v", p, err)
	}
	j.take()
	ss, err = e.Apply(ctx, p, doc("v2"))
	if err != nil || len(j.take()) != 0 {
		t.Fatalf("applying an empty plan: %v", err)
	}
	if got := states(ss); !slices.Equal(got, []string{"network: in sync", "firewall: in sync", "dns: in sync", "mail: in sync"}) {
		t.Fatalf("statuses %q", got)
	}
}

func TestEngineRollsBack(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(fs []*fake, cancel context.CancelFunc)
		lastGood *schema.State
		journal  []string // after the plan
		statuses []string
		errHas   []string
		lives    string // after the apply
	}{{
		name:     "dns fails: network and firewall restored",
		setup:    func(fs []*fake, _ context.CancelFunc) { fs[2].failOn = "v2" },
		lastGood: doc("v1"),
		journal: []string{"apply network v2", "apply firewall v2", "apply dns v2",
			"observe network", "apply network v1", "observe firewall", "apply firewall v1", "observe dns"},
		statuses: []string{"network: rolled back", "firewall: rolled back", "dns: failed", "mail: not applied"},
		errHas:   []string{"dns failed: dns cannot reach v2", "last good version restored to network, firewall, dns"},
		lives:    "v1 v1 v1 v1",
	}, {
		name:     "dns fails half-way: restored too",
		setup:    func(fs []*fake, _ context.CancelFunc) { fs[2].failOn, fs[2].partial = "v2", true },
		lastGood: doc("v1"),
		journal: []string{"apply network v2", "apply firewall v2", "apply dns v2",
			"observe network", "apply network v1", "observe firewall", "apply firewall v1", "observe dns", "apply dns v1"},
		statuses: []string{"network: rolled back", "firewall: rolled back", "dns: failed", "mail: not applied"},
		errHas:   []string{"dns failed"},
		lives:    "v1 v1 v1 v1",
	}, {
		name:     "the first fails: only it is restored",
		setup:    func(fs []*fake, _ context.CancelFunc) { fs[0].failOn, fs[0].partial = "v2", true },
		lastGood: doc("v1"),
		journal:  []string{"apply network v2", "observe network", "apply network v1"},
		statuses: []string{"network: failed", "firewall: not applied", "dns: not applied", "mail: not applied"},
		errHas:   []string{"network failed"},
		lives:    "v1 v1 v1 v1",
	}, {
		name:     "first apply: nothing to restore",
		setup:    func(fs []*fake, _ context.CancelFunc) { fs[1].failOn = "v2" },
		lastGood: nil,
		journal:  []string{"apply network v2", "apply firewall v2"},
		statuses: []string{"network: rollback failed", "firewall: failed", "dns: not applied", "mail: not applied"},
		errHas:   []string{"firewall failed", "no last good version to restore: network, firewall left as they are"},
		lives:    "v2 v1 v1 v1",
	}, {
		name: "restoring fails",
		setup: func(fs []*fake, _ context.CancelFunc) {
			fs[1].failOn = "v2"
			fs[0].failOn = "v1" // network cannot go back
		},
		lastGood: doc("v1"),
		journal: []string{"apply network v2", "apply firewall v2",
			"observe network", "apply network v1", "observe firewall"},
		statuses: []string{"network: rollback failed", "firewall: failed", "dns: not applied", "mail: not applied"},
		errHas:   []string{"firewall failed", "restoring the last good version failed: restore network: network cannot reach v1"},
		lives:    "v2 v1 v1 v1",
	}, {
		name: "restoring cannot observe",
		setup: func(fs []*fake, _ context.CancelFunc) {
			fs[1].failOn = "v2"
			fs[1].during = func() { fs[1].live = "unobservable" }
		},
		lastGood: doc("v1"),
		journal: []string{"apply network v2", "apply firewall v2",
			"observe network", "apply network v1", "observe firewall"},
		statuses: []string{"network: rolled back", "firewall: rollback failed", "dns: not applied", "mail: not applied"},
		errHas:   []string{"firewall failed", "observe firewall: cannot look"},
		lives:    "v1 unobservable v1 v1",
	}, {
		name: "cancelled during an apply: the roll back still runs",
		setup: func(fs []*fake, cancel context.CancelFunc) {
			fs[1].during = cancel // firewall sees it and stops
		},
		lastGood: doc("v1"),
		// network is restored with a context that is not cancelled.
		journal: []string{"apply network v2", "apply firewall v2",
			"observe network", "apply network v1", "observe firewall"},
		statuses: []string{"network: rolled back", "firewall: failed", "dns: not applied", "mail: not applied"},
		errHas:   []string{"firewall failed: context canceled"},
		lives:    "v1 v1 v1 v1",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			j := &journal{}
			fs := fakes(j, "network", "firewall", "dns", "mail")
			c.setup(fs, cancel)
			e := engineOf(fs)
			p, err := e.Plan(ctx, doc("v2"))
			if err != nil {
				t.Fatal(err)
			}
			j.take()
			ss, err := e.Apply(ctx, p, c.lastGood)
			if err == nil {
				t.Fatal("apply succeeded")
			}
			for _, h := range c.errHas {
				if !strings.Contains(err.Error(), h) {
					t.Errorf("error %q lacks %q", err, h)
				}
			}
			if got := j.take(); !slices.Equal(got, c.journal) {
				t.Errorf("journal\n%q\nwant\n%q", got, c.journal)
			}
			if got := states(ss); !slices.Equal(got, c.statuses) {
				t.Errorf("statuses %q, want %q", got, c.statuses)
			}
			for _, s := range ss {
				if (s.State == reconcilers.StateFailed || s.State == reconcilers.StateRollbackFailed) && s.Error == "" {
					t.Errorf("%s: %s without an error", s.Reconciler, s.State)
				}
			}
			if got := lives(fs); got != c.lives {
				t.Errorf("live states %q, want %q", got, c.lives)
			}
		})
	}
}

func TestEngineRefuses(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	fs := fakes(j, "network", "mail")
	e := engineOf(fs)

	if _, err := e.Plan(ctx, nil); err == nil {
		t.Error("plan of no state succeeded")
	}
	fs[1].live = "unobservable"
	if _, err := e.Plan(ctx, doc("v2")); err == nil || !strings.Contains(err.Error(), "observe mail: cannot look") {
		t.Errorf("plan with an unobservable reconciler: %v", err)
	}
	fs[1].live = "v1"

	p, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	j.take()
	for _, bad := range []*reconcilers.Plan{
		nil,
		{Steps: p.Steps[:1]},
		{Steps: []reconcilers.Step{p.Steps[1], p.Steps[0]}},
	} {
		if _, err := e.Apply(ctx, bad, doc("v1")); err == nil {
			t.Errorf("applying %+v succeeded", bad)
		}
	}
	if got := j.take(); len(got) != 0 || lives(fs) != "v1 v1" {
		t.Fatalf("a refused plan did something: %q, %s", got, lives(fs))
	}

	// Cancelled before anything: nothing applied, nothing to restore.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ss, err := e.Apply(cctx, p, doc("v1"))
	if !errors.Is(err, context.Canceled) || len(j.take()) != 0 {
		t.Fatalf("apply with a cancelled context: %v", err)
	}
	if got := states(ss); !slices.Equal(got, []string{"network: not applied", "mail: not applied"}) {
		t.Fatalf("statuses %q", got)
	}
}

// The engine with the real accounts reconciler before one that fails:
// the directory goes back to the last good version.
func TestEngineRestoresTheDirectory(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j := &journal{}
	later := &fake{name: "later", j: j, live: "", failOn: "v2"}
	e := reconcilers.NewEngine(accounts.New(st, nil), later)

	domain := func(version string, ids ...string) *schema.State {
		s := doc(version)
		d := schema.Domain{Name: "a.example", Language: "fr"}
		for _, id := range ids {
			d.Accounts = append(d.Accounts, schema.Account{ID: id, Name: id + " " + version})
		}
		s.Domains = []schema.Domain{d}
		return s
	}
	v1 := domain("v1", "bob", "alice")
	v2 := domain("v2", "bob", "carol")

	p, err := e.Plan(ctx, v1)
	if err != nil {
		t.Fatal(err)
	}
	if ss, err := e.Apply(ctx, p, nil); err != nil {
		t.Fatalf("apply v1: %v %+v", err, ss)
	}
	box := st.MailboxPath("a.example", "alice")
	if err := os.MkdirAll(filepath.Join(box, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(box, "new", "m1"), []byte("Subject: keep me\r\n\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	p, err = e.Plan(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, c := range p.Steps[0].Changes {
		planned = append(planned, c.String())
	}
	if want := []string{"- account alice@a.example", "~ account bob@a.example (name)", "+ account carol@a.example"}; !slices.Equal(planned, want) {
		t.Fatalf("plan %q, want %q", planned, want)
	}
	ss, err := e.Apply(ctx, p, v1)
	if err == nil || !strings.Contains(err.Error(), "later failed") {
		t.Fatalf("apply v2: %v", err)
	}
	if got := states(ss); !slices.Equal(got, []string{"accounts: rolled back", "later: failed"}) {
		t.Fatalf("statuses %q", got)
	}
	// The directory is v1's again.
	if p, err := e.Plan(ctx, v1); err != nil || len(p.Steps[0].Changes) != 0 {
		t.Fatalf("accounts after the roll back: %+v %v", p, err)
	}
	if a, err := st.Account(ctx, "a.example", "bob"); err != nil || a.Name != "bob v1" {
		t.Fatalf("bob: %+v %v", a, err)
	}
	if _, err := st.Account(ctx, "a.example", "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("carol: %v", err)
	}
	// Alice's mail went to the archive with v2 and came back with her
	// account: mail is never deleted, and a roll back gives it back.
	if data, err := os.ReadFile(filepath.Join(box, "new", "m1")); err != nil || string(data) != "Subject: keep me\r\n\r\n" {
		t.Fatalf("alice's mail after the roll back: %q %v", data, err)
	}
	if archived, _ := filepath.Glob(filepath.Join(st.Dir(), "archive", "a.example", "alice-*")); len(archived) != 0 {
		t.Fatalf("alice's mailbox still archived: %q", archived)
	}
}
