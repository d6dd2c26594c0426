package applier

// Commit-confirm (mfapply apply --confirm-within): an apply made with a
// deadline stays only if it is confirmed before the deadline; otherwise
// the version in force before it is applied again, as a new version. A
// change that cuts the administrator off (the network) heals itself.
//
// The applier keeps the pending confirmation in the store, so that it
// survives a restart, and applies the rollback (RollbackUnconfirmed); the
// daemon, the keeper of the deadlines, calls it when the deadline passes.
// Without a keeper nothing would ever roll back: ApplyWithin refuses.
//
// As with a router's "commit confirmed": an apply with a deadline while
// one is pending replaces the deadline and keeps the version to go back
// to (the last one confirmed); an apply that records a version without a
// deadline confirms the pending one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"mailfountain.dev/mailfountain/runtime/store"
)

// MetaConfirm is the store meta key holding the pending confirmation as
// JSON; empty when none is pending.
const MetaConfirm = "confirm_pending"

// Bounds of the time an apply may wait for its confirmation.
const (
	MinConfirmWithin = time.Second
	MaxConfirmWithin = 24 * time.Hour
)

// ErrNoConfirmKeeper is returned by ApplyWithin when nothing rolls back
// at the deadline: no daemon runs on the data directory.
var ErrNoConfirmKeeper = errors.New("no daemon keeps the confirmation deadline: an apply to confirm needs mailfountaind running on the data directory")

// ErrNothingToConfirm is returned (wrapped) by Confirm when no apply
// waits for a confirmation.
var ErrNothingToConfirm = errors.New("nothing to confirm: no apply waits for confirmation")

// PendingConfirm is an apply that waits for its confirmation.
type PendingConfirm struct {
	// Version is the version applied under confirmation; 0 while its
	// apply runs.
	Version int `json:"version"`
	// Previous is the version applied again at the deadline: the one in
	// force before the first apply not confirmed.
	Previous int `json:"previous"`
	// Within is the time the last apply gave, as "2m0s".
	Within string `json:"within"`
	// Since is when the first apply not confirmed was made.
	Since time.Time `json:"since"`
	// Deadline is when the previous version is applied again.
	Deadline time.Time `json:"deadline"`
}

// CheckConfirmWithin says what is wrong with a time to wait for a
// confirmation, or nil.
func CheckConfirmWithin(d time.Duration) error {
	if d < MinConfirmWithin || d > MaxConfirmWithin {
		return fmt.Errorf("confirm within %s: want from %s to %s", d, MinConfirmWithin, MaxConfirmWithin)
	}
	return nil
}

// KeepConfirmDeadlines declares that the caller applies
// RollbackUnconfirmed when the deadline of a pending confirmation passes;
// until one does, ApplyWithin refuses. The channel receives after each
// change of the pending confirmation (set, moved, confirmed, rolled
// back); one value for several when its receiver lags.
func (a *Applier) KeepConfirmDeadlines() <-chan struct{} {
	c := a.confirm.subscribe()
	a.keeper.Store(true)
	return c
}

// ApplyWithin is Apply under confirmation: unless Confirm comes before
// the deadline (now + within), the keeper applies again the version in
// force before. The result's Pending says what is pending. It refuses,
// changing nothing, with ErrNoConfirmKeeper when nobody keeps the
// deadlines, and when there is no version to go back to.
func (a *Applier) ApplyWithin(ctx context.Context, p *Plan, message, origin string, within time.Duration) (*Result, error) {
	if err := CheckConfirmWithin(within); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if !a.keeper.Load() {
		return nil, fmt.Errorf("apply: %w", ErrNoConfirmKeeper)
	}
	return a.apply(ctx, p, message, origin, within)
}

// PendingConfirm returns the pending confirmation, nil if none.
func (a *Applier) PendingConfirm(ctx context.Context) (*PendingConfirm, error) {
	return a.readPending(ctx)
}

// Confirm confirms the pending apply: it stays, and nothing is rolled
// back. It returns what was pending, or an error wrapping
// ErrNothingToConfirm (saying so when the deadline passed and the
// previous version was applied again).
func (a *Applier) Confirm(ctx context.Context) (*PendingConfirm, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("confirm: %w", err)
	}
	defer unlock()
	p, err := a.readPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("confirm: %w", err)
	}
	if p == nil {
		// Too late is worth saying: the change the person meant to keep
		// is gone.
		if v, err := a.store.LatestVersionHead(ctx); err == nil && v != nil && v.Origin == store.OriginConfirmTimeout {
			return nil, fmt.Errorf("%w: too late, the deadline passed: version %d (%s, %s) put the previous version back",
				ErrNothingToConfirm, v.N, v.Created.Local().Format("2006-01-02 15:04:05"), v.Message)
		}
		return nil, ErrNothingToConfirm
	}
	if err := a.writePending(ctx, nil); err != nil {
		return nil, fmt.Errorf("confirm version %d: %w", p.Version, err)
	}
	a.logger.Info("confirmed", "version", p.Version, "deadline", p.Deadline.Format(time.RFC3339))
	return p, nil
}

// RollbackUnconfirmed applies again the version in force before the
// pending apply, as a new version of origin "confirm-timeout", when the
// pending confirmation's deadline is not after now; it returns the result
// and what was pending, or nils when nothing was due (none pending, or
// confirmed meanwhile). On failure the confirmation stays pending: the
// caller tries again later.
func (a *Applier) RollbackUnconfirmed(ctx context.Context, now time.Time) (*Result, *PendingConfirm, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("roll back the unconfirmed apply: %w", err)
	}
	defer unlock()
	p, err := a.readPending(ctx)
	if err != nil || p == nil || now.Before(p.Deadline) {
		if err != nil {
			err = fmt.Errorf("roll back the unconfirmed apply: %w", err)
		}
		return nil, nil, err
	}
	wrap := func(err error) error {
		return fmt.Errorf("roll back version %d to version %d: %w", p.Version, p.Previous, err)
	}
	prev, err := a.store.Version(ctx, p.Previous)
	if err != nil {
		return nil, p, wrap(err)
	}
	srcs := schemaSources(prev.Sources)
	doc, err := a.docs.load(srcs)
	if err != nil {
		return nil, p, wrap(err)
	}
	latest, lastGood, err := a.latest(ctx)
	if err != nil {
		return nil, p, wrap(err)
	}
	ep, err := a.engine.Plan(ctx, doc.state)
	if err != nil {
		return nil, p, wrap(err)
	}
	// On failure the engine puts back the version in force.
	statuses, err := a.engine.Apply(ctx, ep, lastGood)
	res := &Result{Statuses: statuses, Changed: !ep.Empty()}
	if err != nil {
		res.Changed = false
		return res, p, wrap(err)
	}
	if latest == nil || latest.StateHash != doc.hash {
		what := fmt.Sprintf("version %d", p.Version)
		if p.Version == 0 {
			what = "the apply" // interrupted before it recorded its version
		}
		msg := fmt.Sprintf("%s not confirmed within %s: version %d applied again", what, p.Within, p.Previous)
		n, err := a.record(ctx, srcs, doc.state, doc.json, doc.hash, msg, store.OriginConfirmTimeout)
		if err != nil {
			return res, p, wrap(err)
		}
		res.Version, res.Changed = n, true
	}
	if err := a.writePending(ctx, nil); err != nil {
		// The next try finds the previous version in force: it records
		// nothing more, and clears.
		return res, p, wrap(err)
	}
	a.logger.Warn("not confirmed in time: previous version applied again",
		"version", p.Version, "previous", p.Previous, "deadline", p.Deadline.Format(time.RFC3339), "recorded", res.Version)
	return res, p, nil
}

// beginConfirm records, before an apply under confirmation changes
// anything, the confirmation it leaves pending; nil when it leaves none
// (the same document, and nothing pending). base is the latest version;
// records whether the apply records a new one.
func (a *Applier) beginConfirm(ctx context.Context, pending *PendingConfirm, base int, records bool, within time.Duration) (*PendingConfirm, error) {
	now := time.Now().UTC()
	var next PendingConfirm
	switch {
	case pending != nil:
		next = *pending // the version to go back to stays the last confirmed
	case !records:
		return nil, nil // nothing new, nothing to go back to
	case base == 0:
		return nil, errors.New("the first version cannot wait for a confirmation: there is no version to go back to (apply it without --confirm-within)")
	default:
		next = PendingConfirm{Previous: base, Since: now}
	}
	next.Within, next.Deadline = within.String(), now.Add(within)
	if records {
		next.Version = 0 // known once recorded
	}
	if err := a.writePending(ctx, &next); err != nil {
		return nil, err
	}
	return &next, nil
}

// endConfirm records the pending confirmation once its apply is done:
// its version, and its deadline counted from now.
func (a *Applier) endConfirm(ctx context.Context, next *PendingConfirm, version int, within time.Duration) (*PendingConfirm, error) {
	done := *next
	done.Version, done.Deadline = version, time.Now().UTC().Add(within)
	if err := a.writePending(ctx, &done); err != nil {
		return nil, err
	}
	a.logger.Info("waiting for confirmation", "version", done.Version, "previous", done.Previous, "deadline", done.Deadline.Format(time.RFC3339))
	return &done, nil
}

// restorePending puts back what was pending before an apply that failed.
func (a *Applier) restorePending(ctx context.Context, p *PendingConfirm) {
	if err := a.writePending(context.WithoutCancel(ctx), p); err != nil {
		// The deadline written ahead stays: at worst the version in force
		// is applied again at it.
		a.logger.Error("restore the pending confirmation after a failed apply", "err", err)
	}
}

func (a *Applier) readPending(ctx context.Context) (*PendingConfirm, error) {
	var p PendingConfirm
	found, err := a.store.MetaJSON(ctx, MetaConfirm, &p)
	if err != nil {
		return nil, fmt.Errorf("read the pending confirmation: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &p, nil
}

// writePending records p as the pending confirmation (nil: none) and
// tells the keeper.
func (a *Applier) writePending(ctx context.Context, p *PendingConfirm) error {
	v := ""
	if p != nil {
		b, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("write the pending confirmation: %w", err)
		}
		v = string(b)
	}
	if err := a.store.SetMeta(context.WithoutCancel(ctx), MetaConfirm, v); err != nil {
		return fmt.Errorf("write the pending confirmation: %w", err)
	}
	a.confirm.notify()
	return nil
}
