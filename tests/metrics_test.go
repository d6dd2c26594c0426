package tests

// End-to-end tests of mailfountaind --metrics: a real daemon, real mail
// clients (python3's smtplib and imaplib), and a scrape of /metrics over
// HTTP, parsed as Prometheus parses it.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/metrics"
)

// scrapeMetrics GETs url and returns every sample by series: the name and
// the labels, sorted, as Prometheus writes them (`name{a="x",b="y"}`); a
// histogram gives name_count and name_sum.
func scrapeMetrics(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET %s: Content-Type %q, want the text format", url, ct)
	}
	out, err := metrics.Samples(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return out, nil
}

// waitMetrics scrapes url until every series of want has its value (a
// missing series counts as 0), and returns the last scrape: a client sees
// a reply just before the server counts it.
func waitMetrics(t *testing.T, url string, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	waitFor(t, "the metrics", func() error {
		var err error
		if got, err = scrapeMetrics(url); err != nil {
			return err
		}
		var wrong []string
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range want {
				if !yield(k) {
					return
				}
			}
		}) {
			if got[k] != want[k] {
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %v", k, got[k], want[k]))
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("%d series differ:\n%s", len(wrong), strings.Join(wrong, "\n"))
		}
		return nil
	})
	return got
}

// TestMetrics: mailfountaind --metrics counts a message delivered by
// smtplib on the MX, a failed submission login, IMAP logins (one failed,
// one good) by imaplib, and a drift that a resync corrects; /metrics
// serves them with the Go runtime's and the process's metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	dir := t.TempDir()
	d := &mailDaemon{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state.yaml"),
		servers: []string{"smtp", "submission", "imap"},
		args:    []string{"--metrics", "127.0.0.1:0", "--resync", "200ms"}}
	if err := os.WriteFile(d.state, []byte(stateYAML(t, stateOpts{})), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start(t)
	waitVersions(t, d.data, 1)
	if d.addr("metrics") == "" {
		t.Fatalf("no listening address logged for the metrics:\n%s", d.proc.stderr)
	}
	url := "http://" + d.addr("metrics") + "/metrics"

	// Nothing served yet: the mail series are absent or zero.
	got, err := scrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	// The engine told the metrics what the first apply did.
	firstApply := got[`mailfountain_reconciler_changes_applied_total{reconciler="accounts"}`]
	if firstApply < 10 {
		t.Errorf("the first apply counts %v changes of the accounts reconciler, want the directory's (10 or more)", firstApply)
	}
	for k, v := range got {
		if (strings.HasPrefix(k, "mailfountain_sessions_") || strings.HasPrefix(k, "mailfountain_smtp_") ||
			strings.HasPrefix(k, "mailfountain_logins_")) && v != 0 {
			t.Errorf("before any client: %s = %v", k, v)
		}
	}

	p := startPy(t, d)
	// The MX: smtplib delivers a message to thomas.petit.
	p.connect("mx", "smtp")                                                       // 220
	if code, msg := p.call("mx", "ehlo", "sender.example").reply(); code != 250 { // 250
		t.Fatalf("EHLO: %d %s", code, msg)
	}
	msg := message("client@example.com", addr("thomas.petit"), "metrics-mx", "Bonjour\n")
	// MAIL 250, RCPT 250, DATA 354, 250
	if r := p.call("mx", "sendmail", "client@example.com", []string{addr("thomas.petit")}, msg); !r.OK || string(r.Value) != "{}" {
		t.Fatalf("sendmail: %s", r)
	}
	p.call("mx", "quit") // 221
	if got := withHeader(d.inbox(t, "thomas.petit"), "Subject", "metrics-mx"); len(got) != 1 {
		t.Fatalf("%d copies of the message in thomas.petit's inbox, want 1", len(got))
	}

	// Submission: a wrong password.
	p.connect("s", "submission")  // 220
	p.call("s", "ehlo", "laptop") // 250
	if code, msg := p.starttls("s").reply(); code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	p.call("s", "ehlo", "laptop") // 250
	if r := p.smtpAuth("s", "PLAIN", addr("rene.ricard"), "not-the-password"); r.OK || r.Code != 535 {
		t.Fatalf("AUTH with a wrong password: %s (code %d), want 535", r, r.Code)
	}
	p.call("s", "quit") // 221

	// IMAP: an unknown user, then a good login.
	p.connect("i", "imap")
	if r := p.starttls("i"); !r.OK {
		t.Fatalf("STARTTLS: %s", r)
	}
	if r := p.call("i", "login", addr("nobody"), "whatever"); r.OK {
		t.Fatalf("IMAP login of an unknown user: %s", r)
	}
	p.must("i", "login", addr("thomas.petit"), thomasPassword)
	p.logout("i")

	// Drift: the store changed behind the daemon's back, as in
	// TestDaemonCorrectsDrift; the resync (every 200 ms) puts it back.
	db := filepath.Join(d.data, "mailfountain.db")
	drift := exec.Command("python3", "-c", `import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
n = c.execute("UPDATE accounts SET name = 'drifted' WHERE domain = 'ma-societe.fr' AND id = 'thomas.petit'").rowcount
c.commit()
sys.exit(0 if n == 1 else 1)`, db)
	if out, err := drift.CombinedOutput(); err != nil {
		t.Fatalf("change the store: %v\n%s", err, out)
	}

	got = waitMetrics(t, url, map[string]float64{
		`mailfountain_sessions_total{service="mx"}`:                                   1,
		`mailfountain_sessions_total{service="submission"}`:                           1,
		`mailfountain_sessions_total{service="imap"}`:                                 1,
		`mailfountain_smtp_replies_total{class="2xx",service="mx"}`:                   6,
		`mailfountain_smtp_replies_total{class="3xx",service="mx"}`:                   1,
		`mailfountain_smtp_replies_total{class="4xx",service="mx"}`:                   0,
		`mailfountain_smtp_replies_total{class="5xx",service="mx"}`:                   0,
		`mailfountain_smtp_replies_total{class="2xx",service="submission"}`:           5,
		`mailfountain_smtp_replies_total{class="5xx",service="submission"}`:           1,
		`mailfountain_smtp_deliveries_total{result="delivered",service="mx"}`:         1,
		`mailfountain_smtp_deliveries_total{result="delivered",service="submission"}`: 0,
		`mailfountain_logins_total{protocol="smtp",result="bad_password"}`:            1,
		`mailfountain_logins_total{protocol="imap",result="unknown_user"}`:            1,
		`mailfountain_logins_total{protocol="imap",result="ok"}`:                      1,
		`mailfountain_logins_total{protocol="smtp",result="ok"}`:                      0,
		`mailfountain_reconciler_drift_corrected_total{reconciler="accounts"}`:        1,
		`mailfountain_reconciler_drift_corrected_total{reconciler="mail"}`:            0,
		// The first apply's changes, then the drift's; mail's are the
		// settings and the domain's DKIM keys.
		`mailfountain_reconciler_changes_applied_total{reconciler="accounts"}`: firstApply + 1,
		`mailfountain_reconciler_changes_applied_total{reconciler="mail"}`:     2,
		`mailfountain_version_held`:        0,
		`mailfountain_versions_held_total`: 0,
	})
	for k, v := range got {
		if strings.HasPrefix(k, "mailfountain_connections_refused_total") && v != 0 {
			t.Errorf("%s = %v: no connection was refused", k, v)
		}
	}
	if _, ok := got[`mailfountain_version_held`]; !ok {
		t.Error("mailfountain_version_held is not served")
	}
	for _, k := range []string{"mailfountain_reconciler_plan_duration_seconds_count{reconciler=\"accounts\"}",
		"mailfountain_reconciler_apply_duration_seconds_count{reconciler=\"mail\"}",
		"mailfountain_reconciler_last_success_timestamp_seconds{reconciler=\"accounts\"}"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0: the engine tells the metrics what it does", k, got[k])
		}
	}
	for _, k := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}

	// Only GET /metrics is served.
	resp, err := http.Get("http://" + d.addr("metrics") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %s, want 404", resp.Status)
	}

	// An emptied state file is held, not applied (the mass-deletion
	// guard): the metrics say one version is held.
	if err := os.WriteFile(d.state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, map[string]float64{
		`mailfountain_version_held`:        1,
		`mailfountain_versions_held_total`: 1,
	})
	d.stop(t)
}

// TestMetricsOff: without --metrics the daemon holds no listening socket
// (its mail servers are off too); a --metrics address it cannot take
// stops it at start with a clear error.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDaemonProc(t, "--data", filepath.Join(dir, "data"), "-f", state)
	waitVersions(t, filepath.Join(dir, "data"), 1)
	waitFor(t, "the daemon started", func() error {
		if !strings.Contains(p.stderr.String(), "component=control") {
			return fmt.Errorf("control not started")
		}
		return nil
	})
	if n := listeningSockets(t, p.cmd.Process.Pid); n != 0 {
		t.Errorf("without --metrics nor servers, mailfountaind listens on %d TCP sockets, want 0:\n%s", n, p.stderr)
	}
	if strings.Contains(p.stderr.String(), "server=metrics") {
		t.Errorf("metrics served without --metrics:\n%s", p.stderr)
	}

	bad := startDaemonProc(t, "--data", filepath.Join(dir, "data2"), "-f", state, "--metrics", "192.0.2.1:1")
	if code := bad.waitExit(t, 15*time.Second); code != 1 {
		t.Errorf("--metrics on an address not of this host: exit %d, want 1", code)
	}
	if !strings.Contains(bad.stderr.String(), "listen for the metrics (--metrics)") {
		t.Errorf("--metrics on an address not of this host, log:\n%s", bad.stderr)
	}
}

// listeningSockets counts the TCP sockets in LISTEN state that process
// pid holds, from /proc.
func listeningSockets(t *testing.T, pid int) int {
	t.Helper()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	inodes := map[string]bool{}
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "net", table))
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		s.Scan() // the header
		for s.Scan() {
			fields := strings.Fields(s.Text())
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) > 9 && fields[3] == "0A" && inodes[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}
