package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestMailLiveChanges: the state document changes while the daemon runs
// and a client is connected: a new account, a new password. No restart,
// and the open session is not dropped.
func TestMailLiveChanges(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "pop3s", "imaps")
	p := startPy(t, d)

	// An IMAP client logged in with the old password, inbox selected.
	p.imapLogin("open", "imaps", addr("rene.ricard"), renePassword)
	p.must("open", "select", "INBOX")

	const nouveauPassword = "nouveau-secret-1"
	const reneNew = "rene-nouveau-2"
	o := stateOpts{
		RenePasswordHash: passwordHash(t, reneNew),
		Extra:            []extraAccount{{ID: "nouveau", PasswordHash: passwordHash(t, nouveauPassword)}},
	}
	d.setState(t, o, 2)

	// The new account receives mail...
	sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr("nouveau")}, message("bob@sender.example", addr("nouveau"), "welcome", "Bienvenue\n"))
	if n := len(d.inbox(t, "nouveau")); n != 1 {
		t.Errorf("nouveau's inbox holds %d messages, want 1", n)
	}
	// ...and logs in.
	p.popLogin("pop", "pop3s", addr("nouveau"), nouveauPassword)
	if r := p.call("pop", "stat"); !strings.HasPrefix(string(r.Value), "[1,") {
		t.Errorf("STAT of nouveau: %s, want one message", r)
	}
	p.call("pop", "quit")

	// rene: the old password no longer works, the new one does.
	p.connect("old", "pop3s")
	p.call("old", "user", addr("rene.ricard"))
	if r := p.call("old", "pass_", renePassword); r.OK {
		t.Errorf("POP3 login of rene.ricard with his old password accepted after the change: %s", r)
	}
	p.drop("old")
	p.popLogin("new", "pop3s", addr("rene.ricard"), reneNew)
	p.call("new", "quit")
	p.connect("imapold", "imaps")
	if r := p.call("imapold", "login", addr("rene.ricard"), renePassword); r.OK {
		t.Errorf("IMAP login of rene.ricard with his old password accepted after the change: %s", r)
	}
	p.drop("imapold")

	// The session opened before the change is still there.
	if r := p.call("open", "noop"); !r.OK {
		t.Errorf("NOOP on the IMAP session opened before the change: %s, want OK", r)
	}
	p.must("open", "select", "INBOX")
	p.logout("open")
}

// accountStatus is an entry of `mfapply status accounts --json`.
type accountStatus struct {
	Domain      string     `json:"domain"`
	ID          string     `json:"id"`
	LastLogin   *time.Time `json:"last_login"`
	LastService string     `json:"last_service"`
	Messages    int        `json:"messages"`
	Bytes       int64      `json:"bytes"`
}

// TestMailAccountStatus: `mfapply status accounts`, the manual's account
// table, through the running daemon: last logins and what the mailboxes
// hold, against what was delivered.
func TestMailAccountStatus(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "pop3s", "imaps")
	start := time.Now().Add(-time.Second)
	for _, tag := range []string{"st-1", "st-2"} {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr("andre.mouve")}, message("bob@sender.example", addr("andre.mouve"), tag, strings.Repeat("andre\n", 50)))
	}
	sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr("info")}, message("bob@sender.example", addr("info"), "st-3", "info\n"))

	p := startPy(t, d)
	p.popLogin("pop", "pop3s", addr("andre.mouve"), andrePassword)
	p.call("pop", "quit")
	p.imapLogin("imap", "imaps", addr("charline.durand"), charlinePassword)
	p.logout("imap")

	code, out, errOut := mfapply(t, "", "--data", d.data, "status", "accounts", domain, "--json")
	if code != 0 {
		t.Fatalf("mfapply status accounts %s --json: exit %d: %s", domain, code, errOut)
	}
	var list []accountStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("mfapply status accounts --json: %v\n%s", err, out)
	}
	got := map[string]accountStatus{}
	for _, a := range list {
		got[a.ID] = a
	}
	want := []struct {
		id       string
		service  string // "" for never
		messages int
	}{
		{"andre.mouve", "pop3", 2},
		{"charline.durand", "imap", 1},
		{"rene.ricard", "", 1},
		{"thomas.petit", "", 0},
		{"abuse", "", 0},
		{"postmaster", "", 0},
	}
	for _, w := range want {
		a, ok := got[w.id]
		if !ok {
			t.Errorf("no status for %s in %s", w.id, out)
			continue
		}
		if a.Domain != domain {
			t.Errorf("%s: domain %q", w.id, a.Domain)
		}
		switch {
		case w.service == "" && a.LastLogin != nil:
			t.Errorf("%s never logged in, status says %s (%s)", w.id, a.LastLogin, a.LastService)
		case w.service != "" && (a.LastLogin == nil || a.LastService != w.service):
			t.Errorf("%s: last login %v (%q), want one with service %s", w.id, a.LastLogin, a.LastService, w.service)
		case a.LastLogin != nil && (a.LastLogin.Before(start) || a.LastLogin.After(time.Now())):
			t.Errorf("%s: last login %s, not during the test (from %s)", w.id, a.LastLogin, start)
		}
		var size int64
		files := d.inbox(t, w.id)
		for _, f := range files {
			size += int64(len(f.data))
		}
		if a.Messages != w.messages || len(files) != w.messages || a.Bytes != size {
			t.Errorf("%s: status %d messages %d bytes; %d files of %d bytes on disk, want %d messages",
				w.id, a.Messages, a.Bytes, len(files), size, w.messages)
		}
	}

	code, out, errOut = mfapply(t, "", "--data", d.data, "status", "accounts", "nosuch.fr")
	if code != 1 || !strings.Contains(errOut, "nosuch.fr") {
		t.Errorf("mfapply status accounts nosuch.fr: exit %d, stdout %q, stderr %q; want exit 1 and an error naming nosuch.fr", code, out, errOut)
	}
}
