package main

import (
	"context"
	"fmt"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
)

// onlyUnapplied ends a plan whose only changes are fields that no
// reconciler applies yet: it must not read as "in sync".
const onlyUnapplied = "nothing the box can apply yet: only fields that no reconciler applies changed; applying records the document as a new version and changes nothing on the box"

// printUnapplied prints one line per changed field that nothing applies:
// "not applied: network.dhcp.start — no reconciler yet (dhcp)".
func (c *cli) printUnapplied(us []reconcilers.UnappliedField) {
	for _, u := range us {
		fmt.Fprintln(c.stdout, u.String())
	}
}

// printNotCarriedOut ends the report of an apply that recorded fields
// that nothing applies: the plan printed them above.
func (c *cli) printNotCarriedOut(res *applier.Result, p *applier.Plan) {
	if n := len(p.Unapplied); n > 0 && res.Version > 0 {
		fmt.Fprintf(c.stdout, "recorded but not carried out: %s above (not applied: no reconciler yet)\n", plural(n, "field"))
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

// statusBox is "mfapply status": the applied version and the fields of
// its document that no reconciler applies yet.
func (c *cli) statusBox(ctx context.Context) int {
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("status", err)
	}
	defer b.Close()
	n, us, err := b.Unapplied(ctx)
	if err != nil {
		return c.fail("status", err)
	}
	if c.json {
		return c.printJSON(struct {
			Version   int             `json:"version"`
			Unapplied []unappliedJSON `json:"unapplied"`
		}{n, unappliedList(us)})
	}
	if n == 0 {
		fmt.Fprintln(c.stdout, "no version: nothing applied yet")
		return exitOK
	}
	fmt.Fprintf(c.stdout, "version %d applied\n", n)
	if len(us) == 0 {
		fmt.Fprintln(c.stdout, "every field of its document is applied")
		return exitOK
	}
	c.printUnapplied(us)
	fmt.Fprintf(c.stdout, "%s of the applied document not applied: no reconciler applies them yet\n", plural(len(us), "field"))
	return exitOK
}
