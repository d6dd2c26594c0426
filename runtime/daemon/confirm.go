package daemon

import (
	"context"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// Defaults of the retries of a rollback that failed: DefaultConfirmRetry
// after the first failure, doubling up to maxConfirmRetry.
const (
	DefaultConfirmRetry = 5 * time.Second
	maxConfirmRetry     = 5 * time.Minute
)

// ConfirmStatus is the apply that waits for its confirmation (mfapply
// apply --confirm-within), and the rollbacks tried since its deadline.
type ConfirmStatus struct {
	applier.PendingConfirm
	// Attempts are the rollbacks that failed; the next one is at
	// NextAttempt.
	Attempts    int        `json:"attempts,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// confirmKeeper is the daemon's side of commit-confirm: it waits for the
// deadline of the pending confirmation and has the applier roll back
// then, trying again with a growing delay when that fails. Only Run's
// goroutine uses it.
type confirmKeeper struct {
	timer    *time.Timer
	failures int
	retryAt  time.Time // while failures > 0
}

func newConfirmKeeper() *confirmKeeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &confirmKeeper{timer: t}
}

// checkConfirm reads the pending confirmation, shows it in the status,
// and rolls back when its deadline passed; otherwise it sets the timer for
// the deadline (or the next retry). Run calls it on start, when the
// pending confirmation changes and when the timer fires.
func (d *Daemon) checkConfirm(ctx context.Context) {
	k := d.confirm
	k.timer.Stop()
	p, err := d.app.PendingConfirm(ctx)
	if err != nil {
		d.log.Error("read the pending confirmation", "err", err)
		d.confirmFailed(p, err)
		return
	}
	if p == nil {
		k.failures = 0
		d.showConfirm(nil)
		return
	}
	now := time.Now()
	switch {
	case now.Before(p.Deadline):
		k.failures = 0
		d.showConfirm(&ConfirmStatus{PendingConfirm: *p})
		k.timer.Reset(p.Deadline.Sub(now))
		return
	case k.failures > 0 && now.Before(k.retryAt):
		k.timer.Reset(k.retryAt.Sub(now))
		return
	}
	// Once started, a rollback runs to its end, as an apply does.
	res, rolled, err := d.app.RollbackUnconfirmed(context.WithoutCancel(ctx), now)
	// As an apply does: the LED shows how the last one went.
	if res != nil || err != nil {
		d.setStatus(func(s *Status) {
			if res != nil {
				s.Reconcilers = res.Statuses
			}
			s.Failed = ""
			if err != nil {
				s.Failed = err.Error()
			}
		})
	}
	if err != nil {
		d.cfg.Metrics.ConfirmRollback(false)
		d.confirmFailed(p, err)
		d.logStatus()
		return
	}
	k.failures = 0
	d.showConfirm(nil)
	if rolled != nil {
		d.cfg.Metrics.ConfirmRollback(true)
		d.log.Warn("not confirmed in time: the previous version is in force again",
			"unconfirmed", rolled.Version, "previous", rolled.Previous, "deadline", rolled.Deadline.Format(time.RFC3339), "recorded", res.Version)
		d.logStatus()
	}
}

// confirmFailed records a failed rollback (or a failed read of what is
// pending) and sets the timer for the next try: never at once.
func (d *Daemon) confirmFailed(p *applier.PendingConfirm, err error) {
	k := d.confirm
	k.failures++
	delay := d.cfg.ConfirmRetry << min(k.failures-1, 16)
	if delay > maxConfirmRetry || delay <= 0 {
		delay = maxConfirmRetry
	}
	k.retryAt = time.Now().Add(delay)
	k.timer.Reset(delay)
	d.log.Error("roll back the unconfirmed version; it stays pending, trying again", "attempt", k.failures, "retry_in", delay, "err", err)
	next := k.retryAt
	st := &ConfirmStatus{Attempts: k.failures, LastError: err.Error(), NextAttempt: &next}
	if p != nil {
		st.PendingConfirm = *p
	} else if cur := d.Status().Confirm; cur != nil {
		st.PendingConfirm = cur.PendingConfirm
	}
	d.showConfirm(st)
}

func (d *Daemon) showConfirm(c *ConfirmStatus) {
	d.setStatus(func(s *Status) { s.Confirm = c })
	d.cfg.Metrics.ConfirmPending(c != nil)
}
