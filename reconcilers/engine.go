package reconcilers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/schema"
)

// States a reconciler reports after an apply.
const (
	StateInSync         = "in sync"         // nothing to change
	StateChanged        = "changed"         // its changes were applied
	StateFailed         = "failed"          // applying its changes failed
	StateRolledBack     = "rolled back"     // applied, then put back to the last good version
	StateRollbackFailed = "rollback failed" // applied, and could not be put back
	// StateNotApplied: it had changes but came after the one that failed,
	// so they were not applied; it is as it was before the apply.
	StateNotApplied = "not applied"
	// StateSkipped: it has nothing to drive (Skipper); Error says why.
	StateSkipped = "skipped"
)

// Engine plans every reconciler and applies them in dependency order,
// putting those already applied back to the last good version when one
// fails, so that the box is never left half-configured. Its methods are
// safe for concurrent use; the caller serialises applies.
type Engine struct {
	logger *slog.Logger
	obs    Observer
	retry  Backoff
	rs     []Reconciler // in apply order
	index  map[string]int
	// reads and pubs are, per reconciler, the names of the facts it reads
	// and publishes; readers maps a fact to the indexes of its readers.
	reads, pubs [][]string
	readers     map[string][]int

	mu  sync.Mutex
	due map[string]time.Time // when each Requeuer asked to run again
	// dueMoved wakes the Triggers when due changed (capacity 1).
	dueMoved chan struct{}
}

// Spec is a reconciler as the engine is built with it.
type Spec struct {
	Reconciler Reconciler
	// After names the reconcilers that must apply before this one, besides
	// the publishers of the facts it reads (see FactReader).
	After []string
}

// Config is how an engine runs; its zero value is usable.
type Config struct {
	Logger *slog.Logger
	// Observer, if not nil, is told of every plan and apply attempt.
	Observer Observer
	// Retry is how a transient failure is retried; zero fields take the
	// Default* values.
	Retry Backoff
}

// Build returns an engine over specs. The apply order is derived from
// each spec's After and from the facts the reconcilers read and publish:
// a reconciler applies after those it depends on, and otherwise in the
// order of specs. Build refuses two reconcilers of one name, a dependency
// on an unknown reconciler, a fact with two publishers or none, and a
// cycle, which the error names.
func Build(cfg Config, specs ...Spec) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retry.Attempts <= 0 {
		cfg.Retry.Attempts = DefaultAttempts
	}
	if cfg.Retry.Initial <= 0 {
		cfg.Retry.Initial = DefaultBackoffInitial
	}
	if cfg.Retry.Max < cfg.Retry.Initial {
		cfg.Retry.Max = max(DefaultBackoffMax, cfg.Retry.Initial)
	}
	order, err := order(specs)
	if err != nil {
		return nil, fmt.Errorf("build the reconciler engine: %w", err)
	}
	e := &Engine{
		logger:   cfg.Logger,
		obs:      cfg.Observer,
		retry:    cfg.Retry,
		index:    map[string]int{},
		readers:  map[string][]int{},
		due:      map[string]time.Time{},
		dueMoved: make(chan struct{}, 1),
	}
	for i, k := range order {
		r := specs[k].Reconciler
		e.rs = append(e.rs, r)
		e.index[r.Name()] = i
		reads, pubs := declared(r)
		e.reads, e.pubs = append(e.reads, reads), append(e.pubs, pubs)
		for _, f := range reads {
			e.readers[f] = append(e.readers[f], i)
		}
	}
	return e, nil
}

// declared returns the names of the facts r reads and publishes.
func declared(r Reconciler) (reads, pubs []string) {
	if fr, ok := r.(FactReader); ok {
		reads = factNames(fr.Reads())
	}
	if fp, ok := r.(FactPublisher); ok {
		pubs = factNames(fp.Publishes())
	}
	return reads, pubs
}

// edge is why reconciler to applies after from.
type edge struct {
	from, to int
	why      string
}

// order returns the indexes of specs in apply order: a stable topological
// sort of the dependencies, specs' order breaking ties.
func order(specs []Spec) ([]int, error) {
	names := map[string]int{}
	publisher := map[string]int{}
	for i, s := range specs {
		if s.Reconciler == nil {
			return nil, fmt.Errorf("reconciler %d is nil", i+1)
		}
		n := s.Reconciler.Name()
		if _, dup := names[n]; dup {
			return nil, fmt.Errorf("two reconcilers are named %q", n)
		}
		names[n] = i
		_, pubs := declared(s.Reconciler)
		for _, f := range pubs {
			if p, dup := publisher[f]; dup {
				return nil, fmt.Errorf("fact %q is published by both %s and %s", f, specs[p].Reconciler.Name(), n)
			}
			publisher[f] = i
		}
	}
	var edges []edge
	for i, s := range specs {
		n := s.Reconciler.Name()
		for _, a := range s.After {
			j, ok := names[a]
			if !ok {
				return nil, fmt.Errorf("%s depends on %q: no such reconciler", n, a)
			}
			edges = append(edges, edge{j, i, fmt.Sprintf("%s applies after %s", n, a)})
		}
		reads, _ := declared(s.Reconciler)
		for _, f := range reads {
			j, ok := publisher[f]
			if !ok {
				return nil, fmt.Errorf("%s reads fact %q: no reconciler publishes it", n, f)
			}
			edges = append(edges, edge{j, i, fmt.Sprintf("%s reads fact %q of %s", n, f, specs[j].Reconciler.Name())})
		}
	}
	indeg := make([]int, len(specs))
	for _, e := range edges {
		indeg[e.to]++
	}
	done := make([]bool, len(specs))
	var out []int
	for len(out) < len(specs) {
		next := -1
		for i := range specs {
			if !done[i] && indeg[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			return nil, cycleError(specs, edges, done)
		}
		done[next] = true
		out = append(out, next)
		for _, e := range edges {
			if e.from == next {
				indeg[e.to]--
			}
		}
	}
	return out, nil
}

// cycleError names one cycle among the reconcilers not done: each of
// them has a dependency not done, so walking back along those must come
// round.
func cycleError(specs []Spec, edges []edge, done []bool) error {
	start := -1
	for i := range specs {
		if !done[i] {
			start = i
			break
		}
	}
	// Walk from start to one of its undone dependencies, and on, until a
	// reconciler comes again.
	var path []edge
	seen := map[int]int{} // reconciler → its position in path
	at := start
	for {
		if k, ok := seen[at]; ok {
			path = path[k:]
			break
		}
		seen[at] = len(path)
		for _, e := range edges {
			if e.to == at && !done[e.from] {
				path = append(path, e)
				at = e.from
				break
			}
		}
	}
	// path runs against the apply order; show it along.
	slices.Reverse(path)
	names := []string{specs[path[0].from].Reconciler.Name()}
	whys := make([]string, len(path))
	for i, e := range path {
		names = append(names, specs[e.to].Reconciler.Name())
		whys[i] = e.why
	}
	return fmt.Errorf("dependency cycle %s: %s", strings.Join(names, " → "), strings.Join(whys, "; "))
}

// Order is the names of the reconcilers in apply order.
func (e *Engine) Order() []string {
	out := make([]string, len(e.rs))
	for i, r := range e.rs {
		out[i] = r.Name()
	}
	return out
}

// Reconciler is the reconciler of that name, nil when there is none:
// for what reads one's own state (the daemon's status).
func (e *Engine) Reconciler(name string) Reconciler {
	if i, ok := e.index[name]; ok {
		return e.rs[i]
	}
	return nil
}

// Dependents returns names and, transitively, the reconcilers that read
// their facts, in apply order: what must run again when they moved.
func (e *Engine) Dependents(names []string) ([]string, error) {
	run, err := e.closure(names)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, r := range e.rs {
		if run[i] {
			out = append(out, r.Name())
		}
	}
	return out, nil
}

func (e *Engine) closure(names []string) ([]bool, error) {
	run := make([]bool, len(e.rs))
	for _, n := range names {
		i, ok := e.index[n]
		if !ok {
			return nil, fmt.Errorf("no reconciler %q", n)
		}
		run[i] = true
	}
	// Readers come after their publishers: one pass in order suffices.
	for i := range e.rs {
		if !run[i] {
			continue
		}
		for _, f := range e.pubs[i] {
			for _, j := range e.readers[f] {
				run[j] = true
			}
		}
	}
	return run, nil
}

// Step is one reconciler's part of a plan.
type Step struct {
	Reconciler string `json:"reconciler"`
	// Fingerprint is that of the live state the changes were planned from.
	Fingerprint string   `json:"fingerprint"`
	Changes     []Change `json:"changes"`
}

// Plan is what applying a desired state would do, reconciler by reconciler
// in apply order.
type Plan struct {
	Steps []Step `json:"steps"`

	// What Apply needs besides the steps, which a plan read back from a
	// file or a socket lacks: Apply takes only plans of Plan and PlanOnly.
	desired *schema.State
	facts   map[string]factValue // as the plan announced them
	run     []bool               // the steps PlanOnly planned; nil: all
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	if p == nil {
		return true
	}
	for _, s := range p.Steps {
		if len(s.Changes) > 0 {
			return false
		}
	}
	return true
}

// Fingerprints maps each reconciler to the fingerprint of the live state
// it planned from.
func (p *Plan) Fingerprints() map[string]string {
	if p == nil {
		return map[string]string{}
	}
	m := make(map[string]string, len(p.Steps))
	for _, s := range p.Steps {
		m[s.Reconciler] = s.Fingerprint
	}
	return m
}

// Status is what an apply did to one reconciler.
type Status struct {
	Reconciler string `json:"reconciler"`
	State      string `json:"state"` // one of the State constants
	Error      string `json:"error,omitempty"`
	Changes    int    `json:"changes"` // changes applied (before any roll back)
	// Attempts is how many times its Apply ran: more than one when a
	// transient failure was retried. LastError is the error of the last
	// attempt that failed, even if a later one succeeded.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Plan observes every reconciler and plans desired against what it saw.
// A reader of facts is planned with the facts its publishers announced:
// those only applying can tell are KnownAfterApply.
func (e *Engine) Plan(ctx context.Context, desired *schema.State) (*Plan, error) {
	return e.plan(ctx, desired, nil)
}

// PlanOnly plans the named reconcilers and those that read their facts,
// transitively; the steps of the others are empty and Apply leaves them
// alone. The publishers of the facts they read are observed, not planned.
func (e *Engine) PlanOnly(ctx context.Context, desired *schema.State, names []string) (*Plan, error) {
	run, err := e.closure(names)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return e.plan(ctx, desired, run)
}

func (e *Engine) plan(ctx context.Context, desired *schema.State, run []bool) (*Plan, error) {
	if desired == nil {
		return nil, errors.New("plan: no desired state")
	}
	p := &Plan{Steps: make([]Step, len(e.rs)), desired: desired, facts: map[string]factValue{}, run: run}
	for i, r := range e.rs {
		if run != nil && !run[i] {
			p.Steps[i] = Step{Reconciler: r.Name()}
			if e.readBy(i, run) {
				live, err := e.observe(ctx, i)
				if err != nil {
					return nil, err
				}
				e.publish(i, live, nil, p.facts)
			}
			continue
		}
		live, changes, fp, err := e.observeAndPlan(ctx, i, desired, p.facts)
		if err != nil {
			return nil, err
		}
		p.Steps[i] = Step{Reconciler: r.Name(), Fingerprint: fp, Changes: changes}
		e.publish(i, live, changes, p.facts)
	}
	return p, nil
}

// readBy reports whether a reconciler of run reads a fact of reconciler i.
func (e *Engine) readBy(i int, run []bool) bool {
	for _, f := range e.pubs[i] {
		for _, j := range e.readers[f] {
			if run[j] {
				return true
			}
		}
	}
	return false
}

// observe observes reconciler i and notes when it asks to run again.
func (e *Engine) observe(ctx context.Context, i int) (Live, error) {
	r := e.rs[i]
	live, err := r.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe %s: %w", r.Name(), err)
	}
	if q, ok := r.(Requeuer); ok {
		e.requeue(r.Name(), q.RequeueAfter(live))
	}
	return live, nil
}

// observeAndPlan observes reconciler i and plans desired, with the facts
// it reads from table. The fingerprint covers the live state and the
// values of those facts.
func (e *Engine) observeAndPlan(ctx context.Context, i int, desired *schema.State, table map[string]factValue) (live Live, changes []Change, fingerprint string, err error) {
	r := e.rs[i]
	start := time.Now()
	defer func() {
		if e.obs != nil {
			e.obs.Planned(r.Name(), time.Since(start), len(changes), err)
		}
	}()
	live, err = e.observe(ctx, i)
	if err != nil {
		return nil, nil, "", err
	}
	if live != nil {
		fingerprint = live.Fingerprint()
	}
	pctx, digest := withFacts(ctx, r.Name(), e.reads[i], table)
	changes, err = r.Plan(pctx, live, desired)
	if err != nil {
		return nil, nil, "", fmt.Errorf("plan %s: %w", r.Name(), err)
	}
	return live, changes, fingerprintWithFacts(fingerprint, digest), nil
}

// publish puts in table the facts of publisher i once planned is applied
// to live, and returns the names of those whose value moved.
func (e *Engine) publish(i int, live Live, planned []Change, table map[string]factValue) []string {
	if len(e.pubs[i]) == 0 {
		return nil
	}
	fs := e.rs[i].(FactPublisher).Facts(live, planned)
	var moved []string
	for _, f := range e.pubs[i] {
		v, ok := fs.m[f]
		if !ok {
			v = factValue{known: true} // none: the zero value
		}
		if old, ok := table[f]; !ok || old.encode() != v.encode() {
			moved = append(moved, f)
		}
		table[f] = v
	}
	return moved
}

// Apply applies the plan's steps in order, skipping those without
// changes. When a reconciler's Apply moves a fact it publishes, the
// engine observes it again and plans the readers of that fact again
// before applying them, so that they apply the value now known.
//
// A transient failure (see Transient) is retried with backoff, planning
// the reconciler again before each attempt, without touching those
// already applied. If it still fails, or on any other failure, every
// reconciler already applied, and the one that failed, is observed again
// and brought back to lastGood; with no lastGood (the first apply)
// nothing can be restored, and the statuses say so. The error then names
// the reconciler that failed.
//
// The plan must come from this engine's Plan or PlanOnly: same
// reconcilers, same order, and changes whose payloads the reconcilers
// made. The statuses are those of the steps planned.
func (e *Engine) Apply(ctx context.Context, plan *Plan, lastGood *schema.State) ([]Status, error) {
	if plan == nil {
		return nil, errors.New("apply: no plan")
	}
	if err := e.check(plan); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	statuses, err := e.apply(ctx, plan, lastGood)
	if plan.run == nil {
		return statuses, err
	}
	var out []Status
	for i, s := range statuses {
		if plan.run[i] {
			out = append(out, s)
		}
	}
	return out, err
}

func (e *Engine) apply(ctx context.Context, plan *Plan, lastGood *schema.State) ([]Status, error) {
	statuses := make([]Status, len(e.rs))
	for i, r := range e.rs {
		statuses[i] = Status{Reconciler: r.Name(), State: StateInSync}
		if s, ok := r.(Skipper); ok {
			if why := s.SkipReason(); why != "" {
				statuses[i].State, statuses[i].Error = StateSkipped, why
			}
		}
	}
	table := maps.Clone(plan.facts)
	replan := make([]bool, len(e.rs)) // a fact it reads moved
	var applied []int                 // indexes of reconcilers whose changes were applied
	for i, r := range e.rs {
		if plan.run != nil && !plan.run[i] {
			continue
		}
		changes := plan.Steps[i].Changes
		if replan[i] {
			if err := ctx.Err(); err != nil {
				return e.fail(ctx, statuses, plan, applied, i, false, fmt.Errorf("%s not applied: %w", r.Name(), err), lastGood, table)
			}
			e.logger.Info("planning again: a fact it reads moved", "reconciler", r.Name())
			live, again, _, err := e.observeAndPlan(ctx, i, plan.desired, table)
			if err != nil {
				statuses[i].State, statuses[i].Error = StateNotApplied, err.Error()
				return e.fail(ctx, statuses, plan, applied, i, false, fmt.Errorf("%s not applied: %w", r.Name(), err), lastGood, table)
			}
			changes = again
			e.publish(i, live, changes, table)
		}
		if len(changes) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return e.fail(ctx, statuses, plan, applied, i, false, fmt.Errorf("%s not applied: %w", r.Name(), err), lastGood, table)
		}
		e.logger.Info("applying", "reconciler", r.Name(), "changes", len(changes))
		if err := e.applyStep(ctx, i, changes, plan.desired, table, &statuses[i]); err != nil {
			statuses[i].State, statuses[i].Error = StateFailed, err.Error()
			return e.fail(ctx, statuses, plan, applied, i, true, fmt.Errorf("%s failed: %w", r.Name(), err), lastGood, table)
		}
		statuses[i].State, statuses[i].Error, statuses[i].Changes = StateChanged, "", len(changes)
		applied = append(applied, i)
		if len(e.pubs[i]) > 0 {
			// What it published may differ from what it announced: the
			// readers plan with what is.
			live, err := e.observe(ctx, i)
			if err != nil {
				statuses[i].State, statuses[i].Error = StateFailed, err.Error()
				return e.fail(ctx, statuses, plan, applied[:len(applied)-1], i, true, fmt.Errorf("%s failed: %w", r.Name(), err), lastGood, table)
			}
			for _, f := range e.publish(i, live, nil, table) {
				for _, j := range e.readers[f] {
					replan[j] = true
				}
			}
		}
	}
	return statuses, nil
}

// applyStep applies changes to reconciler i, retrying transient failures
// with backoff; each retry plans again, since a failed attempt may have
// done part of the work. It records the attempts in st.
func (e *Engine) applyStep(ctx context.Context, i int, changes []Change, desired *schema.State, table map[string]factValue, st *Status) error {
	r := e.rs[i]
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := r.Apply(ctx, changes)
		if e.obs != nil {
			e.obs.Applied(r.Name(), time.Since(start), len(changes), err)
		}
		st.Attempts = attempt
		if err == nil {
			return nil
		}
		st.LastError = err.Error()
		if !IsTransient(err) || attempt >= e.retry.Attempts {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		wait := e.retry.wait(attempt)
		e.logger.Warn("transient failure; trying again", "reconciler", r.Name(), "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("after %d attempts: %w (%w)", attempt, err, ctx.Err())
		case <-t.C:
		}
		_, again, _, perr := e.observeAndPlan(ctx, i, desired, table)
		if perr != nil {
			return fmt.Errorf("after %d attempts: %w; plan again: %w", attempt, err, perr)
		}
		if len(again) == 0 {
			return nil // the failed attempt did it all
		}
		changes = again
	}
}

// check verifies that plan is one of this engine's.
func (e *Engine) check(plan *Plan) error {
	if len(plan.Steps) != len(e.rs) {
		return fmt.Errorf("the plan has %d reconcilers, the engine %d; plan again", len(plan.Steps), len(e.rs))
	}
	for i, r := range e.rs {
		if plan.Steps[i].Reconciler != r.Name() {
			return fmt.Errorf("step %d of the plan is for %q, the engine's reconciler %d is %q; plan again", i+1, plan.Steps[i].Reconciler, i+1, r.Name())
		}
	}
	if plan.desired == nil {
		return errors.New("the plan was not made by this engine; plan again")
	}
	return nil
}

// fail handles a failure at reconciler i (attempted: its Apply ran) and
// returns the statuses and the error. table holds the facts as they are
// now; the roll back updates it as it restores publishers.
func (e *Engine) fail(ctx context.Context, statuses []Status, plan *Plan, applied []int, i int, attempted bool, cause error, lastGood *schema.State, table map[string]factValue) ([]Status, error) {
	e.logger.Error("apply failed", "reconciler", e.rs[i].Name(), "err", cause)
	for j := i + 1; j < len(e.rs); j++ {
		if len(plan.Steps[j].Changes) > 0 {
			statuses[j].State = StateNotApplied
		}
	}
	if !attempted && len(plan.Steps[i].Changes) > 0 {
		statuses[i].State, statuses[i].Error = StateNotApplied, cause.Error()
	}
	restore := applied
	if attempted {
		restore = append(restore, i)
	}
	if len(restore) == 0 {
		return statuses, cause
	}

	if lastGood == nil {
		var names []string
		for _, j := range restore {
			names = append(names, e.rs[j].Name())
			if j != i {
				statuses[j].State, statuses[j].Error = StateRollbackFailed, "no last good version to restore"
			}
		}
		e.logger.Error("no last good version to restore", "reconcilers", names)
		return statuses, fmt.Errorf("%w; no last good version to restore: %s left as they are", cause, strings.Join(names, ", "))
	}

	// The roll back runs to its end even when ctx is done (which may be
	// why the apply failed): a half-restored box is the worst outcome.
	// It goes in apply order, so that each reader is restored with the
	// facts of its publishers as restored.
	rctx := context.WithoutCancel(ctx)
	var restored, failed []string
	for _, j := range restore {
		r := e.rs[j]
		err := e.restore(rctx, j, lastGood, table)
		if err != nil {
			e.logger.Error("restoring the last good version failed", "reconciler", r.Name(), "err", err)
			failed = append(failed, err.Error())
			if j == i {
				statuses[j].State, statuses[j].Error = StateRollbackFailed, statuses[j].Error+"; "+err.Error()
			} else {
				statuses[j].State, statuses[j].Error = StateRollbackFailed, err.Error()
			}
			continue
		}
		restored = append(restored, r.Name())
		if j != i {
			statuses[j].State = StateRolledBack
		}
	}
	if len(failed) > 0 {
		return statuses, fmt.Errorf("%w; restoring the last good version failed: %s", cause, strings.Join(failed, "; "))
	}
	return statuses, fmt.Errorf("%w; last good version restored to %s", cause, strings.Join(restored, ", "))
}

// restore brings reconciler j back to lastGood and puts the facts it
// publishes, as restored, in table.
func (e *Engine) restore(ctx context.Context, j int, lastGood *schema.State, table map[string]factValue) error {
	r := e.rs[j]
	live, changes, _, err := e.observeAndPlan(ctx, j, lastGood, table)
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		e.logger.Info("restoring the last good version", "reconciler", r.Name(), "changes", len(changes))
		var scratch Status // the statuses tell of the apply, not of the roll back
		if err := e.applyStep(ctx, j, changes, lastGood, table, &scratch); err != nil {
			return fmt.Errorf("restore %s: %w", r.Name(), err)
		}
		if len(e.pubs[j]) == 0 {
			return nil
		}
		if live, err = e.observe(ctx, j); err != nil {
			return fmt.Errorf("restore %s: %w", r.Name(), err)
		}
	}
	e.publish(j, live, nil, table)
	return nil
}

// requeue notes that reconciler name asked to run again after d.
func (e *Engine) requeue(name string, d time.Duration) {
	e.mu.Lock()
	if d > 0 {
		e.due[name] = time.Now().Add(d)
	} else {
		delete(e.due, name)
	}
	e.mu.Unlock()
	select {
	case e.dueMoved <- struct{}{}:
	default:
	}
}
