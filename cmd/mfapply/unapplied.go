package main

import (
	"context"
	"fmt"
	"os"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
)

// onlyUnapplied ends a plan whose only changes are fields that no
// reconciler applies yet: it must not read as "in sync".
const onlyUnapplied = "nothing the box can apply: only fields that it does not apply (listed above) changed; applying records the document as a new version and changes nothing on the box"

// printUnapplied prints one line per changed field that nothing applies:
// "not applied: network.dhcp.start — no box hardware (dhcp)".
func (c *cli) printUnapplied(us []reconcilers.UnappliedField) {
	for _, u := range us {
		fmt.Fprintln(c.stdout, u.String())
	}
}

// printNotCarriedOut ends the report of an apply that recorded fields
// that nothing applies: the plan printed them above.
func (c *cli) printNotCarriedOut(res *applier.Result, p *applier.Plan) {
	if n := len(p.Unapplied); n > 0 && res.Version > 0 {
		fmt.Fprintf(c.stdout, "recorded but not carried out: %s above (not applied)\n", plural(n, "field"))
	}
}

// unappliedJSON is a not-applied field in --json output; Message is the
// line the terminal shows.
type unappliedJSON struct {
	Path    string `json:"path"`
	Section string `json:"section"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func unappliedList(us []reconcilers.UnappliedField) []unappliedJSON {
	out := make([]unappliedJSON, len(us))
	for i, u := range us {
		out[i] = unappliedJSON{Path: u.Path, Section: u.Section, Reason: u.Reason, Message: u.String()}
	}
	return out
}

// statusWithoutDaemon is `mfapply status` when no daemon runs: the
// applied version and the fields of its document that nothing applies.
func (c *cli) statusWithoutDaemon(ctx context.Context) int {
	n, us := 0, []reconcilers.UnappliedField{}
	var pending *applier.PendingConfirm
	if _, err := os.Stat(c.dataDir); err == nil {
		// Read the data directory here: the daemon serves no route for
		// this (its status carries the same fields).
		a, err := c.openHere(ctx)
		if err != nil {
			return c.fail("status", err)
		}
		defer a.Close()
		if n, us, err = a.Unapplied(ctx); err != nil {
			return c.fail("status", err)
		}
		if pending, err = a.PendingConfirm(ctx); err != nil {
			return c.fail("status", err)
		}
	}
	if c.json {
		// The keys of the daemon's status (daemon.Status) that an
		// applier alone knows.
		return c.printJSON(struct {
			Running   bool                         `json:"running"`
			Version   int                          `json:"version"`
			Unapplied []reconcilers.UnappliedField `json:"unapplied"`
			Confirm   *applier.PendingConfirm      `json:"confirm,omitempty"`
		}{false, n, nonNil(us), pending})
	}
	fmt.Fprintf(c.stdout, "mailfountaind does not run on %s: nothing watches the state files, nothing is held\n", c.dataDir)
	if n == 0 {
		fmt.Fprintln(c.stdout, "version: none, nothing applied yet")
		return exitOK
	}
	fmt.Fprintf(c.stdout, "version: %d\n", n)
	if pending != nil {
		c.printPending(pending)
		fmt.Fprintf(c.stdout, "  no daemon runs to apply version %d again at the deadline: mailfountaind does when it starts, at once if the deadline passed\n", pending.Previous)
	}
	c.printUnappliedStatus(us)
	return exitOK
}

// printUnappliedStatus lists, in status, the fields of the applied
// document that no reconciler applies yet.
func (c *cli) printUnappliedStatus(us []reconcilers.UnappliedField) {
	if len(us) == 0 {
		return
	}
	c.printUnapplied(us)
	fmt.Fprintf(c.stdout, "%s of the applied document not applied (reasons above)\n", plural(len(us), "field"))
}
