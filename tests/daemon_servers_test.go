package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// serverStatus is an entry of `mfapply status servers --json`.
type serverStatus struct {
	Server   string `json:"server"`
	Endpoint string `json:"endpoint"`
	Addr     string `json:"addr"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
	Error    string `json:"error"`
}

func serverStatuses(t *testing.T, data string) (map[string]serverStatus, error) {
	t.Helper()
	code, out, errOut := mfapply(t, "", "--data", data, "status", "servers", "--json")
	if code != 0 {
		return nil, fmt.Errorf("mfapply status servers: exit %d: %s", code, errOut)
	}
	var ss []serverStatus
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		return nil, fmt.Errorf("mfapply status servers --json: %w\n%s", err, out)
	}
	m := map[string]serverStatus{}
	for _, s := range ss {
		if s.State == "draining" {
			continue
		}
		key := s.Endpoint
		if key == "" {
			key = s.Server
		}
		m[key] = s
	}
	return m, nil
}

// TestDaemonServersFollowTheDocument: on a fresh box whose document has
// no domain the mail servers do not run; the apply that adds a domain
// starts them, an SMTP session stays open across the next apply and
// delivers, a rollback to the document without a domain stops them. A
// port in use is reported and stops nothing else.
func TestDaemonServersFollowTheDocument(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	fresh := "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n"
	if err := os.WriteFile(state, []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d := startDaemonProc(t, "--data", data, "-f", state, "--resync", "1s",
		"--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--pop3", busy.Addr().String())

	waitVersions(t, data, 1)
	var ss map[string]serverStatus
	waitFor(t, "the servers off", func() (err error) {
		ss, err = serverStatuses(t, data)
		if err == nil && (ss["smtp"].State != "off" || ss["imap"].State != "off") {
			err = fmt.Errorf("%+v", ss)
		}
		return err
	})
	if ss["smtp"].Reason != "no domain in the document" {
		t.Errorf("smtp off: %+v, want the reason", ss["smtp"])
	}
	if strings.Contains(d.stderr.String(), "msg=listening") {
		t.Fatalf("a server listens on a box without a domain:\n%s", d.stderr)
	}

	// The first domain starts them; the port in use is reported.
	saveByRename(t, state, stateDoc("bob"))
	waitVersions(t, data, 2)
	waitFor(t, "the servers to serve", func() (err error) {
		ss, err = serverStatuses(t, data)
		if err == nil && (ss["smtp"].State != "serving" || ss["imap"].State != "serving" || ss["pop3"].State != "failed") {
			err = fmt.Errorf("%+v", ss)
		}
		return err
	})
	if !strings.Contains(ss["pop3"].Error, "address already in use") {
		t.Errorf("pop3: %+v, want the bind error", ss["pop3"])
	}
	if ss["submission"].State != "off" || ss["submission"].Reason != "turned off by --submission" {
		t.Errorf("submission: %+v", ss["submission"])
	}
	mx := ss["smtp"].Addr
	if m := regexp.MustCompile(`msg=listening server=smtp addr=(\S+)`).FindStringSubmatch(d.stderr.String()); m == nil || m[1] != mx {
		t.Errorf("listening line %q, status %s", m, mx)
	}
	_, out, _ := mfapply(t, "", "--data", data, "status", "servers")
	if !regexp.MustCompile(`smtp +smtp +serving +` + regexp.QuoteMeta(mx)).MatchString(out) {
		t.Errorf("mfapply status servers:\n%s", out)
	}

	// A session open across an apply delivers its message.
	c, err := smtp.Dial(mx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, step := range []error{c.Hello("client.test"), c.Mail("someone@remote.test"), c.Rcpt("bob@a.example")} {
		if step != nil {
			t.Fatal(step)
		}
	}
	saveByRename(t, state, stateDoc("bob", "carol"))
	waitVersions(t, data, 3)
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA after the apply: %v", err)
	}
	fmt.Fprintf(w, "From: someone@remote.test\r\nTo: bob@a.example\r\nSubject: across an apply\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA after the apply: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if inbox, _ := filepath.Glob(filepath.Join(data, "mail", "a.example", "bob", "new", "*")); len(inbox) != 1 {
		t.Errorf("bob's inbox holds %d messages, want 1", len(inbox))
	}

	// Freed, the port is taken at the next resync.
	busy.Close()
	waitFor(t, "pop3 to serve", func() (err error) {
		ss, err = serverStatuses(t, data)
		if err == nil && ss["pop3"].State != "serving" {
			err = fmt.Errorf("%+v", ss["pop3"])
		}
		return err
	})

	// A rollback, made by mfapply through the daemon, to the document
	// without a domain stops them.
	if code, out, errOut := mfapply(t, "", "--data", data, "rollback", "1", "--yes"); code != 0 {
		t.Fatalf("mfapply rollback 1: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the servers to stop", func() (err error) {
		ss, err = serverStatuses(t, data)
		if err == nil && ss["smtp"].State != "off" {
			err = fmt.Errorf("%+v", ss)
		}
		return err
	})
	waitFor(t, "the MX to close", func() error {
		c, err := net.DialTimeout("tcp", mx, time.Second)
		if err == nil {
			c.Close()
			return errors.New("still accepts")
		}
		return nil
	})
	if !d.running() {
		t.Fatal("mailfountaind exited")
	}
}
