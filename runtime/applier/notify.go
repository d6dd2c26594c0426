package applier

import (
	"context"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Applied delivers a value after an Apply recorded a new version, whoever
// asked for it (the daemon's watcher, mfapply through the control socket,
// a rollback): the daemon then makes the servers follow it. Notifications
// coalesce; the receiver reads the latest version with LatestState.
func (a *Applier) Applied() <-chan struct{} { return a.applied }

func (a *Applier) notifyApplied() {
	select {
	case a.applied <- struct{}{}:
	default:
	}
}

// LatestState returns the latest version and its state, or nils when none
// was applied yet.
func (a *Applier) LatestState(ctx context.Context) (*store.Version, *schema.State, error) {
	return a.latest(ctx)
}
