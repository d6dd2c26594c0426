package main

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/daemon"
)

// dhcpLine is what plan, apply and status say of network.dhcp.start.
const dhcpLine = "not applied: network.dhcp.start — no box hardware (dhcp)"

// docDHCP is docV1 with the DHCP range moved: a field that no reconciler
// applies yet.
var docDHCP = strings.Replace(docV1, "wan: {method: dhcp}}", "wan: {method: dhcp}, dhcp: {start: 192.168.1.110}}", 1)

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

type unappliedOut struct {
	Path    string `json:"path"`
	Section string `json:"section"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// TestNotApplied: a change that no reconciler applies is said, on the
// terminal and in JSON, by plan, apply and status; it never reads as "the
// live state already matches".
func TestNotApplied(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "status"), 0, "does not run", "version: none, nothing applied yet")
	r := e.run("", "apply", "-f", e.file("v1.yaml", docV1), "--yes")
	e.expect(r, 0, "applied: version 1", "not applied: network.mode — no box hardware (network)", "recorded but not carried out")
	dhcp := e.file("dhcp.yaml", docDHCP)

	r = e.run("", "plan", "-f", dhcp)
	e.expect(r, 2)
	if got, want := lines(r.stdout), []string{dhcpLine, onlyUnapplied}; !slices.Equal(got, want) {
		t.Errorf("plan: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(r.stdout, "already matches") {
		t.Errorf("plan says the live state matches: %s", r)
	}

	var pj struct {
		Changes    bool           `json:"changes"`
		NewVersion bool           `json:"new_version"`
		Unapplied  []unappliedOut `json:"unapplied"`
	}
	r = e.run("", "plan", "-f", dhcp, "--json")
	e.expect(r, 2)
	decodeJSON(t, r, &pj)
	if !pj.Changes || !pj.NewVersion || len(pj.Unapplied) != 1 || pj.Unapplied[0] != (unappliedOut{"network.dhcp.start", "dhcp", "no box hardware", dhcpLine}) {
		t.Errorf("plan --json: %+v", pj)
	}

	r = e.run("", "apply", "-f", dhcp, "--yes")
	e.expect(r, 0, dhcpLine+"\n", onlyUnapplied, "applied: version 2", "recorded but not carried out: 1 field above")
	// Once applied, the same document is no change at all.
	e.expect(e.run("", "plan", "-f", dhcp), 0, "no changes")

	// apply --json: the plan with its unapplied fields, and the result.
	end := e.file("end.yaml", strings.Replace(docDHCP, "start: 192.168.1.110", "start: 192.168.1.110, end: 192.168.1.200", 1))
	e.expect(e.run("", "apply", "-f", end, "--json"), 1, "use --yes")
	var aj struct {
		Plan struct {
			Unapplied []unappliedOut `json:"unapplied"`
		} `json:"plan"`
		Version int `json:"version"`
	}
	r = e.run("", "apply", "-f", end, "--json", "--yes")
	e.expect(r, 0)
	decodeJSON(t, r, &aj)
	if len(aj.Plan.Unapplied) != 1 || aj.Plan.Unapplied[0].Message != "not applied: network.dhcp.end — no box hardware (dhcp)" || aj.Version != 3 {
		t.Errorf("apply --json: %s", r)
	}

	// status lists the fields of the applied document that nothing applies.
	r = e.run("", "status")
	e.expect(r, 0, "version: 3\n", dhcpLine+"\n", "not applied: network.dhcp.end — no box hardware (dhcp)\n", "8 fields of the applied document not applied")
	// The mail reconciler applies smtp.mode, smtp.relay and smtp.queue.
	if strings.Contains(r.stdout, "not applied: smtp.") {
		t.Errorf("status lists an smtp field as not applied:\n%s", r.stdout)
	}
	var sj struct {
		Running   bool           `json:"running"`
		Version   int            `json:"version"`
		Unapplied []unappliedOut `json:"unapplied"`
	}
	r = e.run("", "status", "--json")
	e.expect(r, 0)
	decodeJSON(t, r, &sj)
	if sj.Running || sj.Version != 3 || !slices.Contains(sj.Unapplied, unappliedOut{Path: "network.dhcp.start", Section: "dhcp", Reason: "no box hardware"}) {
		t.Errorf("status --json: %s", r)
	}

	// The same through the daemon's control socket.
	a, srv := serveDaemon(t, e, slog.New(slog.DiscardHandler))
	// The daemon's status, as mailfountaind gives it to its socket.
	srv.SetStatus(func() any {
		n, us, err := a.Unapplied(t.Context())
		if err != nil {
			t.Error(err)
		}
		return daemon.Status{Version: n, Unapplied: us}
	})
	r = e.run("", "plan", "-f", e.file("back.yaml", docV1))
	e.expect(r, 2, "not applied: network.dhcp.start — no box hardware (dhcp)\nnot applied: network.dhcp.end — no box hardware (dhcp)\n"+onlyUnapplied)
	e.expect(e.run("", "status"), 0, "mailfountaind runs on", "version: 3\n", dhcpLine+"\n")
	r = e.run("", "status", "--json")
	e.expect(r, 0)
	decodeJSON(t, r, &sj)
	if !sj.Running || sj.Version != 3 || !slices.Contains(sj.Unapplied, unappliedOut{Path: "network.dhcp.start", Section: "dhcp", Reason: "no box hardware"}) {
		t.Errorf("status --json through the daemon: %s", r)
	}
}
