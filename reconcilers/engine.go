package reconcilers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

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
)

// Engine plans every reconciler and applies them in order, putting those
// already applied back to the last good version when one fails, so that
// the box is never left half-configured.
type Engine struct {
	logger *slog.Logger
	rs     []Reconciler
}

// NewEngine returns an engine over rs, given in apply (dependency) order.
func NewEngine(logger *slog.Logger, rs ...Reconciler) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{logger: logger, rs: append([]Reconciler(nil), rs...)}
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
}

// Plan observes every reconciler and plans desired against what it saw.
func (e *Engine) Plan(ctx context.Context, desired *schema.State) (*Plan, error) {
	if desired == nil {
		return nil, errors.New("plan: no desired state")
	}
	p := &Plan{Steps: make([]Step, len(e.rs))}
	for i, r := range e.rs {
		fp, changes, err := observeAndPlan(ctx, r, desired)
		if err != nil {
			return nil, err
		}
		p.Steps[i] = Step{Reconciler: r.Name(), Fingerprint: fp, Changes: changes}
	}
	return p, nil
}

func observeAndPlan(ctx context.Context, r Reconciler, desired *schema.State) (fingerprint string, changes []Change, err error) {
	live, err := r.Observe(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("observe %s: %w", r.Name(), err)
	}
	if live != nil {
		fingerprint = live.Fingerprint()
	}
	changes, err = r.Plan(ctx, live, desired)
	if err != nil {
		return "", nil, fmt.Errorf("plan %s: %w", r.Name(), err)
	}
	return fingerprint, changes, nil
}

// Apply applies the plan's steps in order, skipping those without
// changes. If one fails, every reconciler already applied, and the one
// that failed, is observed again and brought back to lastGood; with no
// lastGood (the first apply) nothing can be restored, and the statuses
// say so. The error then names the reconciler that failed.
//
// The plan must come from this engine's Plan: same reconcilers, same
// order, and changes whose payloads the reconcilers made.
func (e *Engine) Apply(ctx context.Context, plan *Plan, lastGood *schema.State) ([]Status, error) {
	if plan == nil {
		return nil, errors.New("apply: no plan")
	}
	if err := e.check(plan); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	statuses := make([]Status, len(e.rs))
	for i, r := range e.rs {
		statuses[i] = Status{Reconciler: r.Name(), State: StateInSync}
	}
	var applied []int // indexes of reconcilers whose changes were applied
	for i, r := range e.rs {
		step := plan.Steps[i]
		if len(step.Changes) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return e.fail(ctx, statuses, plan, applied, i, false, fmt.Errorf("%s not applied: %w", r.Name(), err), lastGood)
		}
		e.logger.Info("applying", "reconciler", r.Name(), "changes", len(step.Changes))
		if err := r.Apply(ctx, step.Changes); err != nil {
			statuses[i].State, statuses[i].Error = StateFailed, err.Error()
			return e.fail(ctx, statuses, plan, applied, i, true, fmt.Errorf("%s failed: %w", r.Name(), err), lastGood)
		}
		statuses[i].State, statuses[i].Changes = StateChanged, len(step.Changes)
		applied = append(applied, i)
	}
	return statuses, nil
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
	return nil
}

// fail handles a failure at reconciler i (attempted: its Apply ran) and
// returns the statuses and the error.
func (e *Engine) fail(ctx context.Context, statuses []Status, plan *Plan, applied []int, i int, attempted bool, cause error, lastGood *schema.State) ([]Status, error) {
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
	rctx := context.WithoutCancel(ctx)
	var restored, failed []string
	for _, j := range restore {
		r := e.rs[j]
		_, changes, err := observeAndPlan(rctx, r, lastGood)
		if err == nil && len(changes) > 0 {
			e.logger.Info("restoring the last good version", "reconciler", r.Name(), "changes", len(changes))
			if err = r.Apply(rctx, changes); err != nil {
				err = fmt.Errorf("restore %s: %w", r.Name(), err)
			}
		}
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
