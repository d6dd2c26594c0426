package applier

import (
	"context"
	"fmt"
	"sync"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Unapplied returns the latest version's number (0 when nothing was
// applied yet) and the fields of its document that no reconciler applies
// yet: those it sets, which the box leaves as they are.
func (a *Applier) Unapplied(ctx context.Context) (int, []reconcilers.UnappliedField, error) {
	latest, err := a.store.LatestVersion(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("unapplied fields: %w", err)
	}
	if latest == nil {
		return 0, nil, nil
	}
	st, err := a.appliedState.state(latest)
	if err != nil {
		return 0, nil, fmt.Errorf("unapplied fields: %w", err)
	}
	return latest.N, reconcilers.Unapplied(nil, st), nil
}

// unappliedSince lists the fields that no reconciler applies and that
// differ from latest's document (nil: nothing applied yet) to st.
func (a *Applier) unappliedSince(latest *store.Version, st *schema.State) ([]reconcilers.UnappliedField, error) {
	var old *schema.State
	if latest != nil {
		var err error
		if old, err = a.appliedState.state(latest); err != nil {
			return nil, err
		}
	}
	return reconcilers.Unapplied(old, st), nil
}

// appliedCache keeps the decoded state of the version last asked for: on
// a document of ten thousand accounts, decoding it takes longer than
// comparing it (the comparison walks only the fields not applied).
type appliedCache struct {
	mu   sync.Mutex
	n    int
	hash string
	st   *schema.State // read only: shared by every caller
}

// state returns v's state, decoded once for a version and its hash (a
// backup import may give a number another state).
func (c *appliedCache) state(v *store.Version) (*schema.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil && c.n == v.N && c.hash == v.StateHash {
		return c.st, nil
	}
	st, err := decodeState(v)
	if err != nil {
		return nil, err
	}
	c.n, c.hash, c.st = v.N, v.StateHash, st
	return st, nil
}
