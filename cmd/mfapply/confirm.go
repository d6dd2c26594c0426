package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
)

// checkWithin checks --confirm-within, if fs has it set; it returns a
// non-negative exit status when the command must stop.
func (c *cli) checkWithin(fs *flag.FlagSet, cmd string, within time.Duration) int {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "confirm-within" })
	if !set {
		return -1
	}
	// 0 too: a plain apply, when the person asked for a safety net, would
	// be the wrong surprise.
	if err := applier.CheckConfirmWithin(within); err != nil {
		return c.usageError(cmd, "--confirm-within "+within.String()+": want from 1s to 24h, e.g. 2m")
	}
	return -1
}

// openFor is open, except that an apply under confirmation (within > 0)
// needs the daemon: it is the daemon that applies the previous version
// again at the deadline. Without one it refuses, before anything is read
// or created.
func (c *cli) openFor(ctx context.Context, cmd string, mustExist bool, within time.Duration) (backend, error) {
	if within == 0 {
		return c.open(ctx, mustExist)
	}
	cl, err := control.Dial(c.dataDir)
	if errors.Is(err, control.ErrNoDaemon) {
		return nil, fmt.Errorf("--confirm-within needs mailfountaind running on %s: it is the daemon that applies the previous version again if no confirmation comes; nothing applied", c.dataDir)
	}
	if err != nil {
		return nil, err
	}
	return cl, nil
}

// applyPlan applies p, under confirmation when within > 0.
func applyPlan(ctx context.Context, b backend, p *applier.Plan, message, origin string, within time.Duration) (*applier.Result, error) {
	if within > 0 {
		return b.ApplyWithin(ctx, p, message, origin, within)
	}
	return b.Apply(ctx, p, message, origin)
}

// printConfirmResult says what an apply did to the pending confirmation.
func (c *cli) printConfirmResult(res *applier.Result, within time.Duration) {
	switch {
	case res.Pending != nil:
		c.printPending(res.Pending)
	case within > 0:
		fmt.Fprintln(c.stdout, "nothing waits for confirmation: nothing changed")
	}
	if res.Confirmed > 0 {
		fmt.Fprintf(c.stdout, "confirmed: version %d, which waited for confirmation, stays (this apply confirms it)\n", res.Confirmed)
	}
}

// printPending says what waits for confirmation, until when, and what
// happens then.
func (c *cli) printPending(p *applier.PendingConfirm) {
	if p == nil {
		return
	}
	what := fmt.Sprintf("version %d", p.Version)
	if p.Version == 0 {
		what = "an apply"
	}
	left := time.Until(p.Deadline).Round(time.Second)
	when := fmt.Sprintf("in %s", left)
	if left <= 0 {
		when = "the deadline passed"
	}
	fmt.Fprintf(c.stdout, "waiting for confirmation: %s; unless 'mfapply confirm' comes before %s (%s), version %d is applied again\n",
		what, p.Deadline.Local().Format("2006-01-02 15:04:05"), when, p.Previous)
}

func (c *cli) confirmCmd(ctx context.Context, args []string) int {
	fs := c.flags("confirm")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("confirm", err)
	}
	defer b.Close()
	p, err := b.Confirm(ctx)
	if err != nil {
		return c.fail("confirm", err)
	}
	if c.json {
		return c.printJSON(struct {
			Confirmed *applier.PendingConfirm `json:"confirmed"`
		}{p})
	}
	fmt.Fprintf(c.stdout, "confirmed: version %d stays; version %d is not applied again\n", p.Version, p.Previous)
	return exitOK
}
