package applier

import (
	"context"
	"fmt"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// Unapplied returns the latest version's number (0 when nothing was
// applied yet) and the fields of its document that no reconciler applies
// yet: those it sets, which the box leaves as they are.
func (a *Applier) Unapplied(ctx context.Context) (int, []reconcilers.UnappliedField, error) {
	latest, st, err := a.latest(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("unapplied fields: %w", err)
	}
	if latest == nil {
		return 0, nil, nil
	}
	return latest.N, a.engine.Unapplied(nil, st), nil
}

// UnappliedIn returns the fields st sets that the box leaves as they are:
// those no reconciler applies yet, and those of skipped reconcilers.
func (a *Applier) UnappliedIn(st *schema.State) []reconcilers.UnappliedField {
	return a.engine.Unapplied(nil, st)
}
