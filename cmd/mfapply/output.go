package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/schema"
)

// ANSI colours of the change operations, on a terminal only.
const (
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	red    = "\x1b[31m"
	reset  = "\x1b[0m"
)

// paint colours a line by its operation when stdout is a terminal.
func (c *cli) paint(op, line string) string {
	if !c.color {
		return line
	}
	switch reconcilers.Op(op) {
	case reconcilers.Create:
		return green + line + reset
	case reconcilers.Update:
		return yellow + line + reset
	case reconcilers.Delete:
		return red + line + reset
	}
	return line
}

// printPlan prints p's changes grouped by reconciler, then a summary.
func (c *cli) printPlan(p *applier.Plan) {
	var add, change, remove int
	if p.Engine != nil {
		for _, s := range p.Engine.Steps {
			if len(s.Changes) == 0 {
				continue
			}
			fmt.Fprintf(c.stdout, "%s:\n", s.Reconciler)
			for _, ch := range s.Changes {
				fmt.Fprintf(c.stdout, "  %s\n", c.paint(string(ch.Op), ch.String()))
				switch ch.Op {
				case reconcilers.Create:
					add++
				case reconcilers.Update:
					change++
				case reconcilers.Delete:
					remove++
				}
			}
		}
	}
	c.printUnapplied(p.Unapplied)
	switch {
	case add+change+remove > 0:
		fmt.Fprintf(c.stdout, "plan: %d to add, %d to change, %d to remove\n", add, change, remove)
		if !p.NewVersion {
			fmt.Fprintf(c.stdout, "the document is version %d's: applying corrects the live state without a new version\n", p.BaseVersion)
		}
	case len(p.Unapplied) > 0:
		fmt.Fprintln(c.stdout, onlyUnapplied)
	case p.NewVersion:
		// What changed is read by no reconciler (reconcilers.ReadByNone).
		fmt.Fprintln(c.stdout, "nothing to change on the box: the document differs only in fields that no reconciler reads; applying records it as a new version")
	default:
		fmt.Fprintln(c.stdout, "no changes")
	}
	c.printArchivePlan(p)
}

// printResult prints each reconciler's status and the version recorded.
func (c *cli) printResult(res *applier.Result) {
	for _, s := range res.Statuses {
		line := fmt.Sprintf("%s: %s", s.Reconciler, s.State)
		switch {
		case s.Changes == 1:
			line += " (1 change)"
		case s.Changes > 1:
			line += fmt.Sprintf(" (%d changes)", s.Changes)
		}
		if s.Error != "" {
			line += ": " + s.Error
		}
		if s.Attempts > 1 {
			line += fmt.Sprintf(" [%d attempts; last error: %s]", s.Attempts, s.LastError)
		}
		fmt.Fprintln(c.stdout, line)
	}
	switch {
	case res.Version > 0:
		fmt.Fprintf(c.stdout, "applied: version %d\n", res.Version)
	case res.Changed:
		fmt.Fprintln(c.stdout, "applied: live state corrected; no new version")
	default:
		fmt.Fprintln(c.stdout, "no changes")
	}
}

// nonNil is xs, or an empty list for nil: --json shows [] rather than
// null.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// printJSON writes v as indented JSON to stdout.
func (c *cli) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(c.stderr, "mfapply: encode JSON: %v\n", err)
		return exitFail
	}
	b = append(b, '\n')
	if _, err := c.stdout.Write(b); err != nil {
		fmt.Fprintf(c.stderr, "mfapply: %v\n", err)
		return exitFail
	}
	return exitOK
}

// jsonError is how the read commands report an error with --json.
type jsonError struct {
	Valid  *bool         `json:"valid,omitempty"` // validate only
	Error  string        `json:"error"`
	Errors schema.Errors `json:"errors,omitempty"`
}

// fail reports err and returns the exit status of a failure. An invalid
// document prints every positioned error, one a line.
func (c *cli) fail(cmd string, err error) int {
	var se schema.Errors
	isSchema := errors.As(err, &se)
	if c.json {
		je := jsonError{Error: err.Error()}
		if isSchema {
			je.Error = "invalid state document: " + plural(len(se), "error")
			je.Errors = se
		}
		if cmd == "validate" {
			f := false
			je.Valid = &f
		}
		c.printJSON(je)
		return exitFail
	}
	if isSchema {
		for _, e := range se {
			fmt.Fprintln(c.stderr, e.Error())
		}
		fmt.Fprintf(c.stderr, "mfapply %s: invalid state document: %s\n", cmd, plural(len(se), "error"))
		return exitFail
	}
	fmt.Fprintf(c.stderr, "mfapply %s: %v\n", cmd, err)
	return exitFail
}
