package main

import (
	"bytes"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
)

func TestPrintResultAttempts(t *testing.T) {
	cases := []struct {
		status reconcilers.Status
		want   string
	}{
		{reconcilers.Status{Reconciler: "accounts", State: "changed", Changes: 2, Attempts: 1}, "accounts: changed (2 changes)\n"},
		{reconcilers.Status{Reconciler: "accounts", State: "changed", Changes: 1, Attempts: 3, LastError: "database is locked"},
			"accounts: changed (1 change) [3 attempts; last error: database is locked]\n"},
		{reconcilers.Status{Reconciler: "mail", State: "failed", Changes: 1, Error: "after 5 attempts: busy", Attempts: 5, LastError: "busy"},
			"mail: failed (1 change): after 5 attempts: busy [5 attempts; last error: busy]\n"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		(&cli{stdout: &out}).printResult(&applier.Result{Statuses: []reconcilers.Status{c.status}})
		if got, _, _ := strings.Cut(out.String(), "\n"); got+"\n" != c.want {
			t.Errorf("printResult(%+v) = %q, want %q", c.status, got+"\n", c.want)
		}
	}
}
