package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/supervisor"
)

// statusServers lists the daemon's servers; only the daemon knows them.
func (c *cli) statusServers(ctx context.Context) int {
	cl, err := control.Dial(c.dataDir)
	if errors.Is(err, control.ErrNoDaemon) {
		err = fmt.Errorf("mailfountaind does not run on %s: no server runs", c.dataDir)
	}
	if err != nil {
		return c.fail("status servers", err)
	}
	defer cl.Close()
	ss, err := cl.Servers(ctx)
	if err != nil {
		return c.fail("status servers", err)
	}
	if c.json {
		return c.printJSON(nonNil(ss))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tENDPOINT\tSTATE\tADDRESS\tDETAIL")
	for _, s := range ss {
		detail := s.Reason
		switch {
		case s.Error != "":
			detail = s.Error
		case s.State == supervisor.StateDraining:
			detail = fmt.Sprintf("%d sessions left", s.Sessions)
		case s.State == supervisor.StateServing:
			detail = "since " + s.Since.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Server, dash(s.Endpoint), s.State, dash(s.Addr), oneLine(detail))
	}
	tw.Flush()
	return exitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
