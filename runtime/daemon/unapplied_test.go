package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// TestDaemonReportsUnappliedFields: an edit of a field that no reconciler
// applies is recorded, logged as not applied, and the status lists the
// fields of the applied document that nothing applies.
func TestDaemonReportsUnappliedFields(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, data, state, -1)
	waitFor(t, "status of version 1", func() bool { return r.d.Status().Version == 1 })

	saveByRename(t, state, strings.Replace(doc("a.example", "bob"), "wan: {method: dhcp}}", "wan: {method: dhcp}, dhcp: {start: 192.168.1.110}}", 1))
	waitFor(t, "status of version 2", func() bool { return r.d.Status().Version == 2 })
	if !strings.Contains(r.logs.String(), `msg="not applied: no box hardware" field=network.dhcp.start section=dhcp`) {
		t.Errorf("the log does not say that network.dhcp.start is not applied:\n%s", r.logs)
	}
	want := reconcilers.UnappliedField{Path: "network.dhcp.start", Section: "dhcp", Reason: "no box hardware"}
	if st := r.d.Status(); !slices.Contains(st.Unapplied, want) || !slices.ContainsFunc(st.Unapplied, func(u reconcilers.UnappliedField) bool { return u.Path == "network.mode" }) {
		t.Errorf("status lists as not applied %v; want network.dhcp.start and network.mode among them", st.Unapplied)
	}
}

// TestDaemonStatusFollowsVersionsRecordedElsewhere: a version that
// mfapply records through the control socket (the daemon's applier, not
// its file watcher) updates the fields the status lists as not applied.
func TestDaemonStatusFollowsVersionsRecordedElsewhere(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(doc("a.example", "bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, filepath.Join(dir, "data"), state, -1)
	waitFor(t, "status of version 1", func() bool { return r.d.Status().Version == 1 })
	forward := func() bool {
		return slices.ContainsFunc(r.d.Status().Unapplied, func(u reconcilers.UnappliedField) bool {
			return u.Path == "network.forwards[tcp/8080].port"
		})
	}
	if forward() {
		t.Fatal("version 1 has no forward")
	}

	withForward := strings.Replace(doc("a.example", "bob"), "wan: {method: dhcp}}", "wan: {method: dhcp}, forwards: [{port: 8080, to: 192.168.1.20}]}", 1)
	p, err := r.app.Plan(t.Context(), []schema.Source{{Name: "mfapply.yaml", Data: []byte(withForward), Mode: 0o600}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.app.Apply(t.Context(), p, "through the socket", "mfapply"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status of version 2", func() bool { return r.d.Status().Version == 2 })
	waitFor(t, "the forward listed as not applied", forward)
}
