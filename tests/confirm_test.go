package tests

// End-to-end tests of commit-confirm: mfapply apply --confirm-within and
// mfapply confirm against a real mailfountaind, which applies the previous
// version again when no confirmation comes in time, also across a
// restart. Accounts are the live state checked (mfapply status accounts):
// they need no root and no namespace.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// confirmDoc is a document of a.example with bob (named name) and the
// other accounts.
func confirmDoc(name string, others ...string) string {
	var b strings.Builder
	b.WriteString("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n")
	fmt.Fprintf(&b, "domains:\n  - name: a.example\n    accounts:\n      - {id: bob, name: %q}\n", name)
	for _, a := range others {
		fmt.Fprintf(&b, "      - {id: %s}\n", a)
	}
	return b.String()
}

// confirmBox is a daemon on a data directory, with a state file and a
// second document to apply with mfapply.
type confirmBox struct {
	dir, data, state string
	proc             *daemonProc
	metrics          string // host:port of --metrics
}

func startConfirmBox(t *testing.T) *confirmBox {
	t.Helper()
	dir := t.TempDir()
	b := &confirmBox{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state.yaml")}
	if err := os.WriteFile(b.state, []byte(confirmDoc("Bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	waitVersions(t, b.data, 1)
	return b
}

func (b *confirmBox) start(t *testing.T) {
	t.Helper()
	b.proc = startDaemonProc(t, "--data", b.data, "-f", b.state, "--metrics", "127.0.0.1:0")
	waitFor(t, "the metrics address", func() error {
		if !b.proc.running() {
			t.Fatalf("mailfountaind exited: %v\n%s", b.proc.err, b.proc.stderr)
		}
		for _, l := range listeningRE.FindAllStringSubmatch(b.proc.stderr.String(), -1) {
			if l[1] == "metrics" {
				b.metrics = l[2]
				return nil
			}
		}
		return errors.New("not logged yet")
	})
}

// write writes a document next to the state file and returns its path.
func (b *confirmBox) write(t *testing.T, name, doc string) string {
	t.Helper()
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mfapply runs mfapply on the box's data directory.
func (b *confirmBox) mfapply(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return mfapply(t, "", append([]string{"--data", b.data}, args...)...)
}

// accounts are the live accounts of a.example, "id=name", sorted, but
// the abuse and postmaster accounts that every domain has.
func (b *confirmBox) accounts(t *testing.T) []string {
	t.Helper()
	code, out, errOut := b.mfapply(t, "status", "accounts", "a.example", "--json")
	if code != 0 {
		t.Fatalf("mfapply status accounts: exit %d: %s", code, errOut)
	}
	var list []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("mfapply status accounts --json: %v\n%s", err, out)
	}
	var ids []string
	for _, a := range list {
		if a.ID != "abuse" && a.ID != "postmaster" {
			ids = append(ids, a.ID+"="+a.Name)
		}
	}
	slices.Sort(ids)
	return ids
}

type confirmStatusJSON struct {
	Running bool `json:"running"`
	Version int  `json:"version"`
	Confirm *struct {
		Version  int       `json:"version"`
		Previous int       `json:"previous"`
		Within   string    `json:"within"`
		Deadline time.Time `json:"deadline"`
	} `json:"confirm"`
}

func (b *confirmBox) status(t *testing.T) confirmStatusJSON {
	t.Helper()
	code, out, errOut := b.mfapply(t, "status", "--json")
	if code != 0 {
		t.Fatalf("mfapply status --json: exit %d: %s", code, errOut)
	}
	var st confirmStatusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("mfapply status --json: %v\n%s", err, out)
	}
	return st
}

// applyWithin applies doc with --confirm-within and returns the deadline
// it reports.
func (b *confirmBox) applyWithin(t *testing.T, doc, within string) time.Time {
	t.Helper()
	path := b.write(t, "v.yaml", doc)
	code, out, errOut := b.mfapply(t, "apply", "-f", path, "--yes", "--confirm-within", within, "--json")
	if code != 0 {
		t.Fatalf("mfapply apply --confirm-within %s: exit %d\n%s%s", within, code, out, errOut)
	}
	var res struct {
		Applied bool `json:"applied"`
		Version int  `json:"version"`
		Pending *struct {
			Version  int       `json:"version"`
			Deadline time.Time `json:"deadline"`
		} `json:"pending"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("mfapply apply --json: %v\n%s", err, out)
	}
	if !res.Applied || res.Pending == nil || res.Pending.Version != res.Version {
		t.Fatalf("mfapply apply --confirm-within %s: %s", within, out)
	}
	return res.Pending.Deadline
}

// TestConfirmRollsBackWhenNotConfirmed: applied with --confirm-within 3s
// and not confirmed, version 2 is undone by the daemon: version 1's
// accounts are live again, as version 3 of origin confirm-timeout.
func TestConfirmRollsBackWhenNotConfirmed(t *testing.T) {
	t.Parallel()
	b := startConfirmBox(t)
	v1 := []string{"bob=Bob"}
	if got := b.accounts(t); !slices.Equal(got, v1) {
		t.Fatalf("version 1's accounts: %q", got)
	}

	path := b.write(t, "v2.yaml", confirmDoc("Robert", "carol"))
	code, out, errOut := b.mfapply(t, "apply", "-f", path, "--yes", "--confirm-within", "3s")
	if code != 0 || !strings.Contains(out, "applied: version 2") ||
		!strings.Contains(out, "waiting for confirmation: version 2; unless 'mfapply confirm' comes before") ||
		!strings.Contains(out, "version 1 is applied again") {
		t.Fatalf("mfapply apply --confirm-within 3s: exit %d\n%s%s", code, out, errOut)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Robert", "carol=carol"}) {
		t.Fatalf("version 2's accounts: %q", got)
	}
	st := b.status(t)
	if st.Confirm == nil || st.Confirm.Version != 2 || st.Confirm.Previous != 1 || st.Confirm.Within != "3s" {
		t.Fatalf("mfapply status --json while pending: %+v", st)
	}
	deadline := st.Confirm.Deadline
	if code, out, _ := b.mfapply(t, "status"); code != 0 || !strings.Contains(out, "waiting for confirmation: version 2") {
		t.Errorf("mfapply status while pending: exit %d\n%s", code, out)
	}
	if code, out, _ := b.mfapply(t, "history"); code != 0 || !strings.Contains(out, "waiting for confirmation: version 2") {
		t.Errorf("mfapply history while pending: exit %d\n%s", code, out)
	}
	code, out, _ = b.mfapply(t, "history", "--json")
	if code != 0 || !strings.Contains(out, `"unconfirmed": true`) {
		t.Errorf("mfapply history --json while pending: exit %d\n%s", code, out)
	}

	h := waitVersions(t, b.data, 3)
	if time.Now().Before(deadline) {
		t.Fatalf("rolled back before the deadline %s", deadline)
	}
	if h[2].Origin != "confirm-timeout" {
		t.Fatalf("version 3's origin %q, want confirm-timeout", h[2].Origin)
	}
	if got := b.accounts(t); !slices.Equal(got, v1) {
		t.Fatalf("accounts after the rollback: %q, want version 1's %q", got, v1)
	}
	if st := b.status(t); st.Confirm != nil || st.Version != 3 {
		t.Fatalf("mfapply status --json after the rollback: %+v", st)
	}
	if code, out, _ := b.mfapply(t, "history"); !strings.Contains(out, "version 2 not confirmed within 3s: version 1 applied again") {
		t.Errorf("mfapply history after the rollback: exit %d\n%s", code, out)
	}
	// Too late to confirm, and said so.
	if code, _, errOut := b.mfapply(t, "confirm"); code != 1 || !strings.Contains(errOut, "too late") {
		t.Errorf("mfapply confirm after the rollback: exit %d: %s", code, errOut)
	}
	waitMetrics(t, "http://"+b.metrics+"/metrics", map[string]float64{
		`mailfountain_confirm_pending`:                        0,
		`mailfountain_confirm_rollbacks_total{result="done"}`: 1,
	})
}

// TestConfirmKeepsAConfirmedApply: confirmed in time, version 2 stays
// past its deadline.
func TestConfirmKeepsAConfirmedApply(t *testing.T) {
	t.Parallel()
	b := startConfirmBox(t)
	deadline := b.applyWithin(t, confirmDoc("Robert", "carol"), "3s")
	waitMetrics(t, "http://"+b.metrics+"/metrics", map[string]float64{`mailfountain_confirm_pending`: 1})
	code, out, errOut := b.mfapply(t, "confirm")
	if code != 0 || !strings.Contains(out, "confirmed: version 2 stays") {
		t.Fatalf("mfapply confirm: exit %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Until(deadline) + 2*time.Second)
	if h := waitVersions(t, b.data, 2); h[1].Origin != "mfapply" {
		t.Fatalf("history after the deadline: %+v", h)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Robert", "carol=carol"}) {
		t.Fatalf("accounts after the deadline: %q, want version 2's", got)
	}
	if st := b.status(t); st.Confirm != nil {
		t.Fatalf("mfapply status --json after the confirmation: %+v", st)
	}
	if code, _, errOut := b.mfapply(t, "confirm"); code != 1 || !strings.Contains(errOut, "nothing to confirm") {
		t.Errorf("second mfapply confirm: exit %d: %s", code, errOut)
	}
	waitMetrics(t, "http://"+b.metrics+"/metrics", map[string]float64{
		`mailfountain_confirm_pending`:                        0,
		`mailfountain_confirm_rollbacks_total{result="done"}`: 0,
	})

	// mfapply rollback waits for a confirmation the same way: not
	// confirmed, version 2 comes back.
	code, out, errOut = b.mfapply(t, "rollback", "1", "--yes", "--confirm-within", "2s")
	if code != 0 || !strings.Contains(out, "waiting for confirmation: version 3") || !strings.Contains(out, "version 2 is applied again") {
		t.Fatalf("mfapply rollback 1 --confirm-within 2s: exit %d\n%s%s", code, out, errOut)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Bob"}) {
		t.Fatalf("accounts after the rollback to version 1: %q", got)
	}
	h := waitVersions(t, b.data, 4)
	if h[2].Origin != "rollback" || h[3].Origin != "confirm-timeout" {
		t.Fatalf("history: %+v", h)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Robert", "carol=carol"}) {
		t.Fatalf("accounts once the rollback was undone: %q, want version 2's", got)
	}
}

// TestConfirmWithoutTheDaemon: while the daemon is down, status shows
// what waits, and mfapply confirm works on the data directory: the daemon
// started after the deadline rolls nothing back.
func TestConfirmWithoutTheDaemon(t *testing.T) {
	t.Parallel()
	b := startConfirmBox(t)
	deadline := b.applyWithin(t, confirmDoc("Robert", "carol"), "3s")
	if err := b.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.proc.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("mailfountaind exit code %d after SIGTERM", code)
	}
	code, out, errOut := b.mfapply(t, "status")
	if code != 0 || !strings.Contains(out, "mailfountaind does not run") || !strings.Contains(out, "waiting for confirmation: version 2") ||
		!strings.Contains(out, "no daemon runs to apply version 1 again") {
		t.Fatalf("mfapply status without the daemon: exit %d\n%s%s", code, out, errOut)
	}
	if st := b.status(t); st.Running || st.Confirm == nil || st.Confirm.Version != 2 {
		t.Fatalf("mfapply status --json without the daemon: %+v", st)
	}
	if code, out, errOut := b.mfapply(t, "confirm"); code != 0 || !strings.Contains(out, "confirmed: version 2 stays") {
		t.Fatalf("mfapply confirm without the daemon: exit %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Until(deadline) + 500*time.Millisecond)
	b.start(t)
	waitFor(t, "the daemon's status", func() error {
		if st := b.status(t); !st.Running || st.Version != 2 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	time.Sleep(time.Second)
	if h := waitVersions(t, b.data, 2); h[1].Origin != "mfapply" {
		t.Fatalf("history: %+v", h)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Robert", "carol=carol"}) {
		t.Fatalf("accounts: %q, want version 2's", got)
	}
}

// TestConfirmSurvivesADaemonRestart: the daemon killed while version 2
// waits, and started again before the deadline, still rolls back at it.
func TestConfirmSurvivesADaemonRestart(t *testing.T) {
	t.Parallel()
	b := startConfirmBox(t)
	deadline := b.applyWithin(t, confirmDoc("Robert", "carol"), "6s")
	if err := b.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.proc.waitExit(t, 10*time.Second)
	b.start(t)
	waitFor(t, "the pending confirmation after the restart", func() error {
		code, out, errOut := b.mfapply(t, "status", "--json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		var st confirmStatusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if !st.Running || st.Confirm == nil || st.Confirm.Version != 2 || !st.Confirm.Deadline.Equal(deadline) {
			return fmt.Errorf("status %s", out)
		}
		return nil
	})
	if time.Now().Before(deadline) {
		if got := b.accounts(t); !slices.Equal(got, []string{"bob=Robert", "carol=carol"}) {
			t.Fatalf("accounts before the deadline after the restart: %q", got)
		}
	}
	h := waitVersions(t, b.data, 3)
	if h[2].Origin != "confirm-timeout" || time.Now().Before(deadline) {
		t.Fatalf("version 3 %+v at %s, want a rollback after %s", h[2], time.Now(), deadline)
	}
	if got := b.accounts(t); !slices.Equal(got, []string{"bob=Bob"}) {
		t.Fatalf("accounts after the rollback: %q", got)
	}
}

// TestConfirmNeedsTheDaemon: without mailfountaind nothing would roll
// back: --confirm-within is refused and nothing changes. A bad duration
// is a usage error.
func TestConfirmNeedsTheDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	v1 := filepath.Join(dir, "v1.yaml")
	v2 := filepath.Join(dir, "v2.yaml")
	if err := os.WriteFile(v1, []byte(confirmDoc("Bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v2, []byte(confirmDoc("Robert", "carol")), 0o600); err != nil {
		t.Fatal(err)
	}
	// No data directory yet: refused, and none is created.
	code, out, errOut := mfapply(t, "", "--data", data, "apply", "-f", v1, "--yes", "--confirm-within", "2m")
	if code != 1 || !strings.Contains(errOut, "--confirm-within needs mailfountaind running on "+data) || !strings.Contains(errOut, "nothing applied") {
		t.Fatalf("apply --confirm-within without a daemon: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused apply made the data directory: %v", err)
	}

	if code, out, errOut := mfapply(t, "", "--data", data, "apply", "-f", v1, "--yes"); code != 0 {
		t.Fatalf("apply without the daemon: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"apply", "-f", v2, "--yes", "--confirm-within", "2m"},
		{"apply", "-f", v2, "--yes", "--confirm-within", "2m", "--json"},
		{"rollback", "1", "--yes", "--confirm-within", "2m"},
	} {
		code, out, errOut := mfapply(t, "", append([]string{"--data", data}, args...)...)
		if code != 1 || !strings.Contains(out+errOut, "needs mailfountaind") {
			t.Errorf("mfapply %q without a daemon: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	for _, d := range []string{"0", "0s", "500ms", "25h", "-1m", "soon"} {
		code, out, errOut := mfapply(t, "", "--data", data, "apply", "-f", v2, "--yes", "--confirm-within", d)
		if code != 1 || !strings.Contains(errOut, "confirm-within") {
			t.Errorf("--confirm-within %s: exit %d\n%s%s", d, code, out, errOut)
		}
	}
	if h := waitVersions(t, data, 1); h[0].Origin != "mfapply" {
		t.Fatalf("history: %+v", h)
	}
	if code, _, errOut := mfapply(t, "", "--data", data, "confirm"); code != 1 || !strings.Contains(errOut, "nothing to confirm") {
		t.Errorf("mfapply confirm with nothing pending: exit %d: %s", code, errOut)
	}
}
