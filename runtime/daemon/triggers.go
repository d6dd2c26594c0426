package daemon

import (
	"context"
	"slices"

	"mailfountain.dev/mailfountain/reconcilers"
)

// startTriggers runs the reconcilers' own triggers (the events they watch,
// their requeues) until stop is called; Run resyncs each set they deliver
// with resyncTriggered. Bursts within the debounce delay coalesce.
func (d *Daemon) startTriggers(ctx context.Context) (triggered <-chan []string, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	t := d.app.Triggers(d.cfg.Debounce)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run(ctx)
	}()
	return t.C(), func() {
		cancel()
		<-done
	}
}

// resyncTriggered re-applies the latest version to the reconcilers a
// trigger named and to those that read their facts.
func (d *Daemon) resyncTriggered(ctx context.Context, names []string) {
	d.log.Info("reconcilers asked to run again", "reconcilers", names)
	res, err := d.app.ResyncOnly(context.WithoutCancel(ctx), names)
	d.setStatus(func(s *Status) {
		if res != nil {
			s.Reconcilers = mergeStatuses(s.Reconcilers, res.Statuses)
		}
		// A success clears nothing: it ran only some reconcilers, and
		// the failure may be another's; the next resync of the whole box
		// says.
		if err != nil {
			s.Failed = err.Error()
		}
	})
	if err != nil {
		d.log.Error("resync the latest version", "reconcilers", names, "err", err)
	}
	if err != nil || (res != nil && res.Changed) {
		d.logStatus()
	}
}

// mergeStatuses is old with the statuses of fresh in place of those of the
// same reconcilers.
func mergeStatuses(old, fresh []reconcilers.Status) []reconcilers.Status {
	out := slices.Clone(old)
	for _, f := range fresh {
		i := slices.IndexFunc(out, func(s reconcilers.Status) bool { return s.Reconciler == f.Reconciler })
		if i < 0 {
			out = append(out, f)
		} else {
			out[i] = f
		}
	}
	return out
}
