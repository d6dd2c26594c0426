package applier

import (
	"context"
	"sync"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// recordedSignal tells those who asked (the daemon) that a version was
// recorded, whoever applied it: mfapply through the control socket too.
type recordedSignal struct {
	mu    sync.Mutex
	chans []chan struct{}
}

// VersionRecorded returns a channel that receives after each apply that
// records a version. A receiver that lags gets one value for several:
// the apply never waits for it.
func (a *Applier) VersionRecorded() <-chan struct{} {
	a.recorded.mu.Lock()
	defer a.recorded.mu.Unlock()
	c := make(chan struct{}, 1)
	a.recorded.chans = append(a.recorded.chans, c)
	return c
}

func (r *recordedSignal) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.chans {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// LatestState returns the latest version and its state, or nils when none
// was applied yet.
func (a *Applier) LatestState(ctx context.Context) (*store.Version, *schema.State, error) {
	return a.latest(ctx)
}
