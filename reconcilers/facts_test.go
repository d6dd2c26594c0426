package reconcilers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// Facts of the fakes below.
var (
	testAddress = reconcilers.NewFact[string]("test-address")
	testZone    = reconcilers.NewFact[int]("test-zone-serial")
)

// lease is a fake network reconciler: it publishes the box's address,
// which it learns only once its link is up (like a DHCP lease).
type lease struct {
	j      *journal
	addr   string // live: "" while the link is down
	offer  string // the address Apply gets
	hidden bool   // the fingerprint does not show the address
}

type leaseLive struct {
	addr   string
	hidden bool
}

func (l leaseLive) Fingerprint() string {
	if l.hidden {
		return "link"
	}
	return "link " + l.addr
}

func (f *lease) Name() string   { return "net" }
func (f *lease) Owns() []string { return nil }
func (f *lease) Observe(ctx context.Context) (reconcilers.Live, error) {
	f.j.add("observe net")
	return leaseLive{f.addr, f.hidden}, nil
}

func (f *lease) Plan(ctx context.Context, live reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	if live.(leaseLive).addr != "" {
		return nil, nil
	}
	return []reconcilers.Change{{Op: reconcilers.Create, Resource: "lease"}}, nil
}

func (f *lease) Apply(ctx context.Context, changes []reconcilers.Change) error {
	f.j.add("apply net")
	f.addr = f.offer
	return nil
}

func (f *lease) Publishes() []reconcilers.FactKey { return []reconcilers.FactKey{testAddress} }

func (f *lease) Facts(live reconcilers.Live, planned []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	if len(planned) > 0 {
		reconcilers.Unknown(&fs, testAddress)
	} else {
		reconcilers.Publish(&fs, testAddress, live.(leaseLive).addr)
	}
	return fs
}

// zone is a fake DNS reconciler: its live state is the address its A
// record gives, which must be the box's address.
type zone struct {
	j      *journal
	record string
	reads  []reconcilers.FactKey
}

type zoneLive string

func (l zoneLive) Fingerprint() string { return "A " + string(l) }

func (f *zone) Name() string   { return "dns" }
func (f *zone) Owns() []string { return nil }
func (f *zone) Reads() []reconcilers.FactKey {
	if f.reads != nil {
		return f.reads
	}
	return []reconcilers.FactKey{testAddress}
}

func (f *zone) Observe(ctx context.Context) (reconcilers.Live, error) {
	f.j.add("observe dns")
	return zoneLive(f.record), nil
}

func (f *zone) Plan(ctx context.Context, live reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	addr, known, err := reconcilers.Read(ctx, testAddress)
	if err != nil {
		return nil, err
	}
	if known && string(live.(zoneLive)) == addr {
		return nil, nil
	}
	c := reconcilers.Change{Op: reconcilers.Update, Resource: "A mail", Detail: "address " + reconcilers.Show(addr, known)}
	if known {
		c.Payload = addr
	}
	return []reconcilers.Change{c}, nil
}

func (f *zone) Apply(ctx context.Context, changes []reconcilers.Change) error {
	addr, ok := changes[0].Payload.(string)
	if !ok {
		return errors.New("asked to apply an address not known yet")
	}
	f.j.add("apply dns %s", addr)
	f.record = addr
	return nil
}

func TestFactKnownAfterApplyReachesTheReader(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	net := &lease{j: j, offer: "192.0.2.7"}
	dns := &zone{j: j}
	other := &fake{name: "mail", j: j, live: "v1"}
	// Listed readers first: the engine puts the publisher before.
	e, err := reconcilers.Build(reconcilers.Config{},
		reconcilers.Spec{Reconciler: dns}, reconcilers.Spec{Reconciler: other}, reconcilers.Spec{Reconciler: net})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Order(), []string{"mail", "net", "dns"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}

	p, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, s := range p.Steps {
		for _, c := range s.Changes {
			shown = append(shown, c.String())
		}
	}
	if want := []string{"~ mail v2", "+ lease", "~ A mail (address (known after apply))"}; !slices.Equal(shown, want) {
		t.Fatalf("plan %q, want %q", shown, want)
	}
	j.take()

	ss, err := e.Apply(ctx, p, doc("v1"))
	if err != nil {
		t.Fatalf("apply: %v %+v", err, ss)
	}
	// The lease came during the apply: dns is planned again with it and
	// applies it, in the same apply.
	if got, want := j.take(), []string{"apply mail v2", "apply net", "observe net", "observe dns", "apply dns 192.0.2.7"}; !slices.Equal(got, want) {
		t.Fatalf("journal %q, want %q", got, want)
	}
	if got, want := states(ss), []string{"mail: changed", "net: changed", "dns: changed"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	if dns.record != "192.0.2.7" {
		t.Fatalf("dns record %q", dns.record)
	}
	if p, err := e.Plan(ctx, doc("v2")); err != nil || !p.Empty() {
		t.Fatalf("plan after apply: %+v %v", p, err)
	}
}

// A reader in sync when planned must follow a fact its publisher moves
// during the apply, though its own step had no changes.
func TestFactMovedDuringApplyReplansAReaderInSync(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	net := &lease{j: j, addr: "192.0.2.1", offer: "192.0.2.9"}
	dns := &zone{j: j, record: "192.0.2.1"}
	e := reconcilers.NewEngine(net, dns)
	p, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("plan %+v", p.Steps)
	}
	// The box lost its lease behind the plan's back: net must ask again.
	// Its fingerprint shows it, so an applier would call the plan stale;
	// the engine itself applies what it is given, and dns follows.
	net.addr = ""
	p, err = e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps[1].Changes) != 1 || !strings.Contains(p.Steps[1].Changes[0].Detail, reconcilers.KnownAfterApply) {
		t.Fatalf("dns step %+v", p.Steps[1])
	}
	net.offer = "192.0.2.9"
	j.take()
	if _, err := e.Apply(ctx, p, doc("v1")); err != nil {
		t.Fatal(err)
	}
	if dns.record != "192.0.2.9" {
		t.Fatalf("dns record %q, want the new lease", dns.record)
	}
}

// A fact that moves without its publisher's fingerprint moving still
// makes the reader's step another: a plan made before is stale.
func TestFactInReadersFingerprint(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	net := &lease{j: j, addr: "192.0.2.1", hidden: true}
	dns := &zone{j: j, record: "192.0.2.1"}
	e := reconcilers.NewEngine(net, dns)
	before, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	net.addr = "192.0.2.2"
	after, err := e.Plan(ctx, doc("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if before.Steps[0].Fingerprint != after.Steps[0].Fingerprint {
		t.Fatalf("net's fingerprint moved: the test needs one that does not")
	}
	b, a := before.Steps[1].Fingerprint, after.Steps[1].Fingerprint
	if b == a {
		t.Fatalf("dns's fingerprint %q did not move with the fact it reads", a)
	}
	if got := reconcilers.FingerprintChange(b, a); got != "the facts it reads" {
		t.Fatalf("FingerprintChange = %q", got)
	}
	if got := reconcilers.FingerprintChange("fp-v1", "fp-v2"); got != "its live state" {
		t.Fatalf("FingerprintChange of live states = %q", got)
	}
}

// sneak reads a fact it did not declare.
type sneak struct{ zone }

func (s *sneak) Reads() []reconcilers.FactKey { return nil }

func TestFactReadUndeclared(t *testing.T) {
	j := &journal{}
	e := reconcilers.NewEngine(&lease{j: j, addr: "192.0.2.1"}, &sneak{zone{j: j}})
	if _, err := e.Plan(context.Background(), doc("v1")); err == nil || !strings.Contains(err.Error(), "read fact test-address") {
		t.Fatalf("plan of an undeclared read: %v", err)
	}
}

func TestBuildRefuses(t *testing.T) {
	j := &journal{}
	named := func(n string) reconcilers.Reconciler { return &fake{name: n, j: j} }
	spec := func(r reconcilers.Reconciler, after ...string) reconcilers.Spec {
		return reconcilers.Spec{Reconciler: r, After: after}
	}
	cases := []struct {
		name  string
		specs []reconcilers.Spec
		err   string
	}{
		{"unknown dependency", []reconcilers.Spec{spec(named("a")), spec(named("b"), "c")}, `b depends on "c": no such reconciler`},
		{"same name twice", []reconcilers.Spec{spec(named("a")), spec(named("a"))}, `two reconcilers are named "a"`},
		{"dependency cycle", []reconcilers.Spec{spec(named("a"), "c"), spec(named("b"), "a"), spec(named("c"), "b")},
			"dependency cycle a → b → c → a: b applies after a; c applies after b; a applies after c"},
		{"depends on itself", []reconcilers.Spec{spec(named("a"), "a")}, "dependency cycle a → a: a applies after a"},
		{"fact nobody publishes", []reconcilers.Spec{spec(&zone{j: j})}, `dns reads fact "test-address": no reconciler publishes it`},
		{"fact published twice", []reconcilers.Spec{spec(&lease{j: j}), spec(&renamed{lease{j: j}, "net2"})}, `fact "test-address" is published by both net and net2`},
		{"nil", []reconcilers.Spec{{}}, "reconciler 1 is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := reconcilers.Build(reconcilers.Config{}, c.specs...)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Build: %v, want an error with %q", err, c.err)
			}
		})
	}
}

// A reading cycle through facts only: dns reads net's address and
// publishes the zone serial, which net reads.
func TestBuildRefusesAFactCycle(t *testing.T) {
	j := &journal{}
	_, err := reconcilers.Build(reconcilers.Config{},
		reconcilers.Spec{Reconciler: &netReadingSerial{lease{j: j}}},
		reconcilers.Spec{Reconciler: &serialPublisher{zone{j: j}}})
	want := `dependency cycle net → dns → net: dns reads fact "test-address" of net; net reads fact "test-zone-serial" of dns`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Build: %v, want %q", err, want)
	}
}

type renamed struct {
	lease
	name string
}

func (r *renamed) Name() string { return r.name }

type serialPublisher struct{ zone }

func (s *serialPublisher) Publishes() []reconcilers.FactKey {
	return []reconcilers.FactKey{testZone}
}

func (s *serialPublisher) Facts(live reconcilers.Live, planned []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	reconcilers.Publish(&fs, testZone, 1)
	return fs
}

type netReadingSerial struct{ lease }

func (n *netReadingSerial) Reads() []reconcilers.FactKey { return []reconcilers.FactKey{testZone} }

// flaky fails its first failures Apply attempts with err.
type flaky struct {
	fake
	failures int
	err      error
}

func (f *flaky) Apply(ctx context.Context, changes []reconcilers.Change) error {
	if f.failures > 0 {
		f.failures--
		f.j.add("apply %s fails", f.name)
		return f.err
	}
	return f.fake.Apply(ctx, changes)
}

// calls is an Observer that records what it is told.
type calls struct {
	mu    sync.Mutex
	lines []string
}

func (c *calls) Planned(r string, took time.Duration, changes int, err error) {
	c.add("planned", r, took, changes, err)
}

func (c *calls) Applied(r string, took time.Duration, changes int, err error) {
	c.add("applied", r, took, changes, err)
}

func (c *calls) add(what, r string, took time.Duration, changes int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := fmt.Sprintf("%s %s %d", what, r, changes)
	if err != nil {
		l += " error"
	}
	if took < 0 {
		l += " negative duration"
	}
	c.lines = append(c.lines, l)
}

func TestTransientAndTerminalFailures(t *testing.T) {
	busy := reconcilers.Transient(errors.New("database is locked"))
	invalid := errors.New("no such interface eth9")
	cases := []struct {
		name     string
		failures int
		err      error
		journal  []string
		statuses []string
		attempts int
		lastErr  string
		errHas   string // "" for success
		observed []string
	}{{
		name: "transient, then fine: retried, nothing rolled back", failures: 2, err: busy,
		journal:  []string{"apply network v2", "apply dns fails", "observe dns", "apply dns fails", "observe dns", "apply dns v2"},
		statuses: []string{"network: changed", "dns: changed"}, attempts: 3, lastErr: "database is locked",
		observed: []string{"applied network 1", "applied dns 1 error", "planned dns 1", "applied dns 1 error", "planned dns 1", "applied dns 1"},
	}, {
		name: "terminal: no retry, rolled back", failures: 1, err: invalid,
		journal:  []string{"apply network v2", "apply dns fails", "observe network", "apply network v1", "observe dns"},
		statuses: []string{"network: rolled back", "dns: failed"}, attempts: 1, lastErr: "no such interface eth9",
		errHas:   "dns failed: no such interface eth9",
		observed: []string{"applied network 1", "applied dns 1 error", "planned network 1", "applied network 1", "planned dns 0"},
	}, {
		name: "transient every time: rolled back once the attempts are spent", failures: 99, err: busy,
		journal: []string{"apply network v2", "apply dns fails", "observe dns", "apply dns fails", "observe dns", "apply dns fails",
			"observe network", "apply network v1", "observe dns"},
		statuses: []string{"network: rolled back", "dns: failed"}, attempts: 3, lastErr: "database is locked",
		errHas: "dns failed: after 3 attempts: database is locked",
		observed: []string{"applied network 1", "applied dns 1 error", "planned dns 1", "applied dns 1 error", "planned dns 1", "applied dns 1 error",
			"planned network 1", "applied network 1", "planned dns 0"},
	}, {
		name: "a wrapped transient error is transient", failures: 1, err: fmt.Errorf("write zone: %w", busy),
		journal:  []string{"apply network v2", "apply dns fails", "observe dns", "apply dns v2"},
		statuses: []string{"network: changed", "dns: changed"}, attempts: 2, lastErr: "write zone: database is locked",
		observed: []string{"applied network 1", "applied dns 1 error", "planned dns 1", "applied dns 1"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			j := &journal{}
			network := &fake{name: "network", j: j, live: "v1"}
			dns := &flaky{fake: fake{name: "dns", j: j, live: "v1"}, failures: c.failures, err: c.err}
			obs := &calls{}
			e, err := reconcilers.Build(reconcilers.Config{Observer: obs, Retry: reconcilers.Backoff{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}},
				reconcilers.Spec{Reconciler: network}, reconcilers.Spec{Reconciler: dns, After: []string{"network"}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := e.Plan(ctx, doc("v2"))
			if err != nil {
				t.Fatal(err)
			}
			j.take()
			obs.lines = nil
			ss, err := e.Apply(ctx, p, doc("v1"))
			switch {
			case c.errHas == "" && err != nil:
				t.Fatalf("apply: %v", err)
			case c.errHas != "" && (err == nil || !strings.Contains(err.Error(), c.errHas)):
				t.Fatalf("apply: %v, want an error with %q", err, c.errHas)
			}
			if got := j.take(); !slices.Equal(got, c.journal) {
				t.Errorf("journal\n%q\nwant\n%q", got, c.journal)
			}
			if got := states(ss); !slices.Equal(got, c.statuses) {
				t.Errorf("statuses %q, want %q", got, c.statuses)
			}
			if ss[1].Attempts != c.attempts || ss[1].LastError != c.lastErr || ss[0].Attempts != 1 || ss[0].LastError != "" {
				t.Errorf("statuses %+v, want dns with %d attempts and last error %q", ss, c.attempts, c.lastErr)
			}
			if got := obs.lines; !slices.Equal(got, c.observed) {
				t.Errorf("observer\n%q\nwant\n%q", got, c.observed)
			}
		})
	}
}

func TestObserverTold(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	obs := &calls{}
	fs := fakes(j, "network", "mail")
	fs[1].live = "unobservable"
	e, err := reconcilers.Build(reconcilers.Config{Observer: obs}, reconcilers.Spec{Reconciler: fs[0]}, reconcilers.Spec{Reconciler: fs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Plan(ctx, doc("v2")); err == nil {
		t.Fatal("plan succeeded")
	}
	if want := []string{"planned network 1", "planned mail 0 error"}; !slices.Equal(obs.lines, want) {
		t.Fatalf("observer %q, want %q", obs.lines, want)
	}
}

func TestPlanOnly(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	mail := &fake{name: "mail", j: j, live: "v1"}
	net := &lease{j: j, addr: "192.0.2.1", offer: "192.0.2.1"}
	dns := &zone{j: j, record: "192.0.2.5"} // drifted
	e := reconcilers.NewEngine(net, dns, mail)
	if got, err := e.Dependents([]string{"net"}); err != nil || !slices.Equal(got, []string{"net", "dns"}) {
		t.Fatalf("Dependents(net) = %q, %v", got, err)
	}
	if _, err := e.PlanOnly(ctx, doc("v2"), []string{"nope"}); err == nil {
		t.Fatal("PlanOnly of an unknown reconciler succeeded")
	}

	// dns alone: net is observed for its address, not planned; mail is
	// left alone though it has drifted too.
	p, err := e.PlanOnly(ctx, doc("v2"), []string{"dns"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.take(), []string{"observe net", "observe dns"}; !slices.Equal(got, want) {
		t.Fatalf("journal %q, want %q", got, want)
	}
	ss, err := e.Apply(ctx, p, doc("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := states(ss), []string{"dns: changed"}; !slices.Equal(got, want) {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	if got, want := j.take(), []string{"apply dns 192.0.2.1"}; !slices.Equal(got, want) {
		t.Fatalf("journal %q, want %q", got, want)
	}
	if mail.live != "v1" {
		t.Fatalf("mail was applied: %q", mail.live)
	}

	// net: dns comes with it, as a reader of its address.
	p, err = e.PlanOnly(ctx, doc("v2"), []string{"net"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.take(), []string{"observe net", "observe dns"}; !slices.Equal(got, want) {
		t.Fatalf("journal %q, want %q", got, want)
	}
	if len(p.Steps) != 3 || p.Steps[2].Reconciler != "mail" || p.Steps[2].Fingerprint != "" {
		t.Fatalf("steps %+v", p.Steps)
	}
}
