package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// daemonStatus is what `mfapply status --json` says of the daemon.
type daemonStatus struct {
	Running bool `json:"running"`
	Version int  `json:"version"`
	Pending bool `json:"pending"`
	Held    *struct {
		SourcesHash     string   `json:"sources_hash"`
		Since           string   `json:"since"`
		Reasons         []string `json:"reasons"`
		RemovedDomains  []string `json:"removed_domains"`
		RemovedAccounts []struct {
			Account  string `json:"account"`
			Messages int    `json:"messages"`
			Bytes    int64  `json:"bytes"`
		} `json:"removed_accounts"`
		Messages int    `json:"messages"`
		Apply    string `json:"apply"`
	} `json:"held"`
}

// hasLine reports whether a line of out holds every part.
func hasLine(out string, parts ...string) bool {
	for l := range strings.Lines(out) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func statusOf(t *testing.T, data string) (daemonStatus, error) {
	t.Helper()
	code, out, errOut := mfapply(t, "", "--data", data, "status", "--json")
	var st daemonStatus
	if code != 0 {
		return st, fmt.Errorf("mfapply status --json: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("mfapply status --json: %v\n%s", err, out)
	}
	return st, nil
}

// TestMailHoldsAnEmptiedStateFile: the real daemon, its state file
// emptied by mistake. Nothing is removed, the status says what is held
// and why; mfapply apply -f, by a person, shows what it archives and
// applies it; the hold clears.
func TestMailHoldsAnEmptiedStateFile(t *testing.T) {
	t.Parallel()
	d := startMail(t, stateOpts{}, "smtp")
	for _, to := range []string{"rene.ricard", "andre.mouve", "andre.mouve"} {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(to)}, message("bob@sender.example", addr(to), "hold-"+to, "keep me\n"))
	}

	saveByRename(t, d.state, "")
	// The start logged one status; the edit, held or applied, logs another.
	waitFor(t, "the emptied file handled", func() error {
		if strings.Count(d.proc.stderr.String(), "msg=status ") < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if h, err := history(t, d.data); err != nil || len(h) != 1 {
		t.Fatalf("the emptied file was applied: %d versions (%v)", len(h), err)
	}
	for _, id := range []string{"rene.ricard", "andre.mouve"} {
		if _, err := os.Stat(filepath.Join(d.mailbox(id), "cur")); err != nil {
			t.Errorf("%s's mailbox after the held edit: %v", id, err)
		}
	}
	if code, out, errOut := mfapply(t, "", "--data", d.data, "status", "accounts", domain); code != 0 || !strings.Contains(out, "rene.ricard@"+domain) {
		t.Errorf("accounts after the held edit: exit %d\n%s%s", code, out, errOut)
	}

	st, err := statusOf(t, d.data)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Held == nil || !st.Pending || st.Version != 1 {
		t.Fatalf("status %+v, want running, pending, version 1, held", st)
	}
	h := st.Held
	want := []string{"it removes the domain " + domain, "it removes all the accounts (6)", "it removes 2 mailboxes with mail out of 2, more than half (3 messages"}
	if len(h.Reasons) != len(want) {
		t.Fatalf("held for %q, want %q", h.Reasons, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(h.Reasons[i], w) {
			t.Errorf("reason %q, want %q", h.Reasons[i], w)
		}
	}
	counts := map[string]int{}
	for _, a := range h.RemovedAccounts {
		counts[a.Account] = a.Messages
	}
	if counts[addr("rene.ricard")] != 1 || counts[addr("andre.mouve")] != 2 || len(counts) != 6 || h.Messages != 3 || h.Since == "" ||
		h.Apply != "mfapply apply -f "+d.state {
		t.Errorf("held %+v", h)
	}
	// The terminal form, and the daemon's log, in words.
	code, out, _ := mfapply(t, "", "--data", d.data, "status")
	for _, w := range []string{"state files: held since", "- it removes the domain " + domain, "to apply them, after reading the plan: mfapply apply -f " + d.state} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("mfapply status lacks %q: exit %d\n%s", w, code, out)
		}
	}
	if !hasLine(out, addr("andre.mouve"), " 2 messages ", "944 B") {
		t.Errorf("mfapply status does not say andre.mouve's mailbox holds 2 messages:\n%s", out)
	}
	if log := d.proc.stderr.String(); !strings.Contains(log, `msg="state files held: not applied automatically"`) || !strings.Contains(log, `reason="it removes the domain `+domain+`"`) {
		t.Errorf("the daemon's log does not say why it holds the edit:\n%s", log)
	}

	// A person applies it, after seeing what it archives.
	code, out, errOut := mfapply(t, "", "--data", d.data, "apply", "-f", d.state, "--yes")
	if code != 0 {
		t.Fatalf("mfapply apply -f: exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{"archive: the mailboxes of the 6 accounts removed move to the archive", "applied: version 2"} {
		if !strings.Contains(out, w) {
			t.Errorf("mfapply apply lacks %q:\n%s", w, out)
		}
	}
	if !hasLine(out, addr("andre.mouve"), " 2 messages ", "944 B") || !hasLine(out, "total", " 3 messages ", "1.4 KB") {
		t.Errorf("mfapply apply does not show what it archives, per account and in total:\n%s", out)
	}
	waitFor(t, "the hold cleared", func() error {
		st, err := statusOf(t, d.data)
		if err == nil && (st.Held != nil || st.Pending || st.Version != 2) {
			err = fmt.Errorf("status %+v", st)
		}
		return err
	})
	code, out, _ = mfapply(t, "", "--data", d.data, "archive", "list")
	if code != 0 || !strings.Contains(out, domain+"/rene.ricard-") || !strings.Contains(out, domain+"/andre.mouve-") {
		t.Errorf("archive list after the apply: exit %d\n%s", code, out)
	}
}

// TestMailRollbackBringsMailBack: an IMAP client (python's imaplib) sees
// an account removed and rolled back: the same UIDVALIDITY, UIDs, flags
// and messages, in every folder, so that it resynchronises without
// starting over.
func TestMailRollbackBringsMailBack(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	const password = "paul-secret-1"
	withPaul := stateOpts{Extra: []extraAccount{{ID: "paul", PasswordHash: passwordHash(t, password)}}}
	d := startMail(t, withPaul, "smtp", "imaps")
	for i := 1; i <= 3; i++ {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr("paul")},
			message("bob@sender.example", addr("paul"), fmt.Sprintf("rb-%d", i), fmt.Sprintf("body %d\n", i)))
	}

	p := startPy(t, d)
	p.imapLogin("a", "imaps", addr("paul"), password)
	p.must("a", "create", "Projets")
	p.must("a", "select", "INBOX")
	inbox := imapBySubject(t, p, "a")
	p.must("a", "store", strconv.Itoa(inbox["rb-2"].seq), "+FLAGS", `(\Seen \Flagged)`)
	p.must("a", "copy", strconv.Itoa(inbox["rb-3"].seq), "Projets")
	type folderState struct {
		validity, next int
		uids           map[string]int
		flags          map[string][]string
	}
	// snapshot reads a folder's state; false if the server has no such
	// folder.
	snapshot := func(c, f string) (folderState, bool) {
		if typ, _ := p.call(c, "status", f, "(MESSAGES)").imap(); typ != "OK" {
			return folderState{}, false
		}
		v, n := imapStatus(t, p, c, f)
		p.must(c, "select", f)
		msgs := imapBySubject(t, p, c)
		s := folderState{validity: v, next: n, uids: uidsOf(msgs), flags: map[string][]string{}}
		for subj, m := range msgs {
			s.flags[subj] = m.flags()
		}
		return s, true
	}
	folders := []string{"INBOX", "Projets"}
	before := map[string]folderState{}
	for _, f := range folders {
		before[f], _ = snapshot("a", f)
	}
	if len(before["INBOX"].uids) != 3 || len(before["Projets"].uids) != 1 {
		t.Fatalf("before: %+v", before)
	}
	p.logout("a")

	// A person removes paul (another document than the watched one).
	without := filepath.Join(d.dir, "without-paul.yaml")
	if err := os.WriteFile(without, []byte(stateYAML(t, stateOpts{})), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := mfapply(t, "", "--data", d.data, "apply", "-f", without, "--yes")
	if code != 0 {
		t.Fatalf("mfapply apply (paul removed): exit %d\n%s%s", code, out, errOut)
	}
	if !hasLine(out, addr("paul"), " 4 messages ") {
		t.Errorf("mfapply apply (paul removed) does not say his 4 messages go to the archive:\n%s", out)
	}
	p.connect("b", "imaps")
	if r := p.call("b", "login", addr("paul"), password); r.OK {
		t.Fatalf("paul logs in after his removal: %s", r)
	}
	p.drop("b")
	if code, out, _ := mfapply(t, "", "--data", d.data, "archive", "list"); code != 0 || !strings.Contains(out, domain+"/paul-") {
		t.Errorf("archive list after the removal: exit %d\n%s", code, out)
	}

	// The rollback says it brings the mailbox back, and does.
	code, out, errOut = mfapply(t, "", "--data", d.data, "rollback", "1", "--yes")
	if code != 0 {
		t.Fatalf("mfapply rollback 1: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "restore: these accounts come back with their archived mailboxes") || !hasLine(out, addr("paul"), " 4 messages ", "from "+domain+"/paul-") {
		t.Errorf("mfapply rollback does not say paul's mail comes back:\n%s", out)
	}
	p.imapLogin("c", "imaps", addr("paul"), password)
	for _, f := range folders {
		b := before[f]
		a, ok := snapshot("c", f)
		if !ok {
			t.Errorf("%s after the rollback: no such folder", f)
			continue
		}
		if a.validity != b.validity || a.next != b.next {
			t.Errorf("%s after the rollback: UIDVALIDITY %d UIDNEXT %d, want %d and %d", f, a.validity, a.next, b.validity, b.next)
		}
		if !maps.Equal(a.uids, b.uids) {
			t.Errorf("%s after the rollback: UIDs %v, want %v", f, a.uids, b.uids)
		}
		for subj, fl := range b.flags {
			if strings.Join(a.flags[subj], " ") != strings.Join(fl, " ") {
				t.Errorf("%s: %s's flags after the rollback %v, want %v", f, subj, a.flags[subj], fl)
			}
		}
	}
	p.logout("c")
	if code, out, _ := mfapply(t, "", "--data", d.data, "archive", "list"); code != 0 || !strings.Contains(out, "no archives") {
		t.Errorf("archive list after the rollback: exit %d\n%s", code, out)
	}
}
