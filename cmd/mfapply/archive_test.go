package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
)

// docCarol is docV2 without bob.
const docCarol = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - {id: carol, name: Carol}
`

// mail writes n messages of 100 bytes into the inbox of id@a.example.
func (e *env) mail(id string, n int) {
	e.t.Helper()
	cur := filepath.Join(e.data, "mail", "a.example", id, "cur")
	if err := os.MkdirAll(cur, 0o700); err != nil {
		e.t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(cur, fmt.Sprintf("17000000%02d.M%dP1.mail,S=100:2,S", i, i)), make([]byte, 100), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestArchiveCommands: a plan shows what it archives, with or without
// --yes and in JSON; archive list; a rollback restores; purge asks.
func TestArchiveCommands(t *testing.T) {
	e := newEnv(t)
	v2 := e.file("v2.yaml", docV2)
	e.expect(e.run("", "apply", "-f", v2, "--yes"), 0, "applied: version 1")
	e.mail("bob", 3)
	e.mail("carol", 1)

	// bob leaves: the plan says what goes to the archive.
	noBob := e.file("nobob.yaml", docCarol)
	archived := []string{"- account bob@a.example",
		"archive: the mailboxes of the 1 account removed move to the archive, kept until purged",
		"  bob@a.example  3 messages  300 B\n", "  total          3 messages  300 B\n"}
	r := e.run("", "plan", "-f", noBob)
	e.expect(r, 2, archived...)
	if strings.Contains(r.stdout, "warning:") {
		t.Errorf("one of two mailboxes with mail (half) warned about:\n%s", r)
	}
	var p planOutput
	decodeJSON(t, e.run("", "plan", "-f", noBob, "--json"), &p)
	if a := p.Archive; a == nil || len(a.RemovedAccounts) != 1 || a.RemovedAccounts[0] != (applier.MailboxSummary{Account: "bob@a.example", Messages: 3, Bytes: 300}) ||
		a.Messages != 3 || a.Bytes != 300 || len(a.RemovedDomains) != 0 || a.Restored == nil {
		t.Fatalf("plan --json archive: %+v", p.Archive)
	}
	// Without a terminal and without --yes: refused, after the summary.
	e.expect(e.run("", "apply", "-f", noBob), 1, append(archived, "refusing to apply without confirmation")...)
	// apply --json --yes: the plan with its archive, and the result.
	r = e.run("", "apply", "-f", noBob, "--json", "--yes")
	var out applyOutput
	decodeJSON(t, r, &out)
	if !out.Applied || out.Version != 2 || out.Plan.Archive.Messages != 3 || len(out.Statuses) == 0 {
		t.Fatalf("apply --json: %+v\n%s", out, r)
	}

	// The archive lists it.
	r = e.run("", "archive", "list")
	e.expect(r, 0, "ARCHIVE", "a.example/bob-", "bob@a.example", "total: 1 archive")
	var list []applier.ArchiveInfo
	decodeJSON(t, e.run("", "archive", "list", "--json"), &list)
	if len(list) != 1 || list[0].Account != "bob@a.example" || list[0].Messages != 3 || list[0].Bytes != 300 || !list[0].Newest ||
		time.Since(list[0].Archived) > time.Minute || !strings.HasPrefix(list[0].Name, "a.example/bob-") {
		t.Fatalf("archive list --json: %+v", list)
	}

	// The rollback brings bob back with his mail.
	e.expect(e.run("", "rollback", "1", "--yes"), 0, "restore: these accounts come back with their archived mailboxes",
		"bob@a.example  3 messages  300 B  from "+list[0].Name, "applied: version 3")
	e.expect(e.run("", "archive", "list"), 0, "no archives")
	e.expect(e.run("", "status", "accounts", "--json"), 0, `"messages": 3`)

	// The empty document: a warning, and every mailbox in the summary.
	empty := e.file("empty.yaml", "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n")
	e.expect(e.run("", "plan", "-f", empty), 2, "removes the domain a.example and all its accounts",
		"warning: it removes the domain a.example; mailfountaind's file watcher holds such an edit",
		"warning: it removes all the accounts (4)", "warning: it removes 2 mailboxes with mail out of 2", "total                 4 messages  400 B")

	// Purge: bob leaves again; nothing is old enough; by name, refused
	// without a terminal, cancelled, then done with --yes.
	e.expect(e.run("", "apply", "-f", noBob, "--yes"), 0, "applied: version 4")
	decodeJSON(t, e.run("", "archive", "list", "--json"), &list)
	if len(list) != 1 {
		t.Fatalf("archives: %+v", list)
	}
	e.expect(e.run("", "archive", "purge", "--older-than", "90d"), 0, "no archive is older than 2160h0m0s: nothing to purge")
	e.expect(e.run("", "archive", "purge", "a.example/bob-20000101T000000Z"), 1, "no archive a.example/bob-20000101T000000Z")
	e.expect(e.run("", "archive", "purge", list[0].Name), 1, "to purge, for good:", list[0].Name, "refusing to delete mail without confirmation")
	e.expect(e.run("", "archive", "list"), 0, list[0].Name)
	e.expect(e.run("", "archive", "purge", list[0].Name, "-y"), 0, "purged: "+list[0].Name)
	e.expect(e.run("", "archive", "list"), 0, "no archives")

	// restore: to an account that exists only.
	e.expect(e.run("", "apply", "-f", v2, "--yes"), 0, "applied: version 5")
	e.mail("bob", 2)
	e.expect(e.run("", "apply", "-f", noBob, "--yes"), 0, "applied: version 6")
	decodeJSON(t, e.run("", "archive", "list", "--json"), &list)
	e.expect(e.run("", "archive", "restore", list[0].Name), 1, "account bob@a.example", "add it to the state document")
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90d", 90 * 24 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"0d", 0}, {"-1d", 0}, {"d", 0}, {"90", 0}, {"90 d", 0}, {"+3d", 0}, {"03d", 0}, {"99999999d", 0}, {"-1h", 0}, {"", 0},
	}
	for _, tt := range tests {
		got, err := parseAge(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("parseAge(%q) = %s, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseAge(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"90d", "2w", "36h", "0d", "9223372036854775807d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseAge(s)
		if err == nil && (d <= 0 || d > maxAge) {
			t.Fatalf("parseAge(%q) = %s", s, d)
		}
	})
}
