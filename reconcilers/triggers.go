package reconcilers

import (
	"context"
	"sync"
	"time"
)

// Triggers gathers the reasons the reconcilers give to run again, besides
// the document and the periodic resync: the events of each Watcher and the
// requeues of each Requeuer. It coalesces them and delivers, on C, the
// names of the reconcilers to run again: those triggered and, transitively,
// those that read their facts.
type Triggers struct {
	e        *Engine
	coalesce time.Duration
	out      chan []string
	poke     chan struct{} // capacity 1: a Watcher's event

	mu      sync.Mutex
	pending map[string]bool
}

// Triggers returns the engine's triggers; bursts within coalesce of the
// first event are delivered together. Run them with Run.
func (e *Engine) Triggers(coalesce time.Duration) *Triggers {
	return &Triggers{
		e:        e,
		coalesce: coalesce,
		out:      make(chan []string),
		poke:     make(chan struct{}, 1),
		pending:  map[string]bool{},
	}
}

// C delivers the reconcilers to run again, in apply order.
func (t *Triggers) C() <-chan []string { return t.out }

// Notify asks for reconciler name to run again, as a Watcher's event does.
func (t *Triggers) Notify(name string) {
	t.mu.Lock()
	t.pending[name] = true
	t.mu.Unlock()
	select {
	case t.poke <- struct{}{}:
	default:
	}
}

// Run watches, through every Watcher, and waits for requeues until ctx is
// done; it returns once the watches have returned. One Run at a time.
func (t *Triggers) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, r := range t.e.rs {
		w, ok := r.(Watcher)
		if !ok {
			continue
		}
		name := r.Name()
		wg.Go(func() {
			err := w.Watch(ctx, func() { t.Notify(name) })
			if ctx.Err() == nil {
				// Its events are lost until the daemon restarts; the
				// periodic resync still corrects what they would have.
				t.e.logger.Error("a reconciler's watch stopped", "reconciler", name, "err", err)
			}
		})
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var due <-chan time.Time
		if next, ok := t.e.nextDue(); ok {
			timer.Reset(time.Until(next))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-t.poke:
		case <-t.e.dueMoved:
		case <-due:
		}
		timer.Stop()
		if !t.takeDue(time.Now()) {
			continue
		}
		// Coalesce: what comes within the window joins this run.
		if t.coalesce > 0 {
			w := time.NewTimer(t.coalesce)
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case <-w.C:
			}
			t.takeDue(time.Now())
		}
		names := t.take()
		if len(names) == 0 {
			continue
		}
		select {
		case t.out <- names:
		case <-ctx.Done():
			return
		}
	}
}

// takeDue moves the requeues due by now to the pending reconcilers, and
// reports whether any is pending.
func (t *Triggers) takeDue(now time.Time) bool {
	due := t.e.takeDue(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range due {
		t.pending[n] = true
	}
	return len(t.pending) > 0
}

// take empties the pending set and returns it with the readers of its
// facts, in apply order.
func (t *Triggers) take() []string {
	t.mu.Lock()
	names := make([]string, 0, len(t.pending))
	for n := range t.pending {
		if _, ok := t.e.index[n]; ok {
			names = append(names, n)
		} else {
			t.e.logger.Error("a trigger for no such reconciler", "reconciler", n)
		}
	}
	clear(t.pending)
	t.mu.Unlock()
	out, _ := t.e.Dependents(names) // names are the engine's
	return out
}

// nextDue is the earliest requeue.
func (e *Engine) nextDue() (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var next time.Time
	for _, at := range e.due {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// takeDue removes and returns the reconcilers whose requeue is due by now;
// their next observation sets their next requeue.
func (e *Engine) takeDue(now time.Time) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for n, at := range e.due {
		if !at.After(now) {
			out = append(out, n)
			delete(e.due, n)
		}
	}
	return out
}
