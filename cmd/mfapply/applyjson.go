package main

import (
	"context"
	"errors"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
)

// applyOutput is apply --json: the plan, then what applying it did.
type applyOutput struct {
	Plan   planOutput  `json:"plan"`
	Result *resultJSON `json:"result,omitempty"`
	Error  string      `json:"error,omitempty"`
}

type resultJSON struct {
	Version  int                  `json:"version"` // 0: none recorded
	Changed  bool                 `json:"changed"`
	Statuses []reconcilers.Status `json:"statuses"`
}

// applyJSON is confirmAndApply with --json: there is no one to ask, so
// --yes is required, and the plan and the result are one JSON object.
func (c *cli) applyJSON(ctx context.Context, cmd string, b backend, p *applier.Plan, yes bool, message, origin string) int {
	out := applyOutput{Plan: planJSON(p, "")}
	if !hasChanges(p) {
		return c.printJSON(out)
	}
	if !yes {
		return c.fail(cmd, errors.New("refusing to apply without confirmation: --json asks nothing (use --yes)"))
	}
	res, err := b.Apply(ctx, p, message, origin)
	if res != nil {
		out.Result = &resultJSON{Version: res.Version, Changed: res.Changed, Statuses: res.Statuses}
		if out.Result.Statuses == nil {
			out.Result.Statuses = []reconcilers.Status{}
		}
	}
	if err != nil {
		out.Error = err.Error()
		c.printJSON(out)
		return exitFail
	}
	return c.printJSON(out)
}
