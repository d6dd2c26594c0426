package applier

import (
	"context"
	"sync"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// broadcast tells those who asked (the daemon) that something happened,
// whoever did it: a version recorded, by mfapply through the control
// socket too; a confirmation pending or no longer.
type broadcast struct {
	mu    sync.Mutex
	chans []chan struct{}
}

// VersionRecorded returns a channel that receives after each apply that
// records a version. A receiver that lags gets one value for several:
// the apply never waits for it.
func (a *Applier) VersionRecorded() <-chan struct{} {
	return a.recorded.subscribe()
}

// subscribe returns a channel that receives after each notify, one value
// for several when its receiver lags.
func (r *broadcast) subscribe() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(chan struct{}, 1)
	r.chans = append(r.chans, c)
	return c
}

func (r *broadcast) notify() {
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
