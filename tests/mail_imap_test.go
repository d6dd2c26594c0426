package tests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const imapSummary = "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"

// imapBySubject fetches the summary of every message of the selected
// folder: Subject → fetch.
func imapBySubject(t *testing.T, p *py, c string) map[string]imapFetch {
	t.Helper()
	out := map[string]imapFetch{}
	r := p.call(c, "fetch", "1:*", imapSummary)
	if typ, data := r.imap(); typ == "OK" && len(data) == 1 && data[0] == "" {
		return out // an empty folder
	}
	for _, f := range r.fetches(t) {
		s := f.subject()
		if s == "" || f.uid() == 0 {
			t.Fatalf("FETCH %s: no Subject or UID in %q", imapSummary, f.text)
		}
		if _, dup := out[s]; dup {
			t.Fatalf("FETCH: two messages with Subject %s", s)
		}
		out[s] = f
	}
	return out
}

// uidsOf maps Subject → UID.
func uidsOf(fs map[string]imapFetch) map[string]int {
	out := map[string]int{}
	for s, f := range fs {
		out[s] = f.uid()
	}
	return out
}

var uidValidityRE = regexp.MustCompile(`UIDVALIDITY (\d+)`)
var uidNextRE = regexp.MustCompile(`UIDNEXT (\d+)`)

// imapStatus returns a folder's UIDVALIDITY and UIDNEXT.
func imapStatus(t *testing.T, p *py, c, folder string) (validity, next int) {
	t.Helper()
	_, data := p.must(c, "status", folder, "(UIDVALIDITY UIDNEXT MESSAGES)").imap()
	s := strings.Join(data, " ")
	v, n := uidValidityRE.FindStringSubmatch(s), uidNextRE.FindStringSubmatch(s)
	if v == nil || n == nil {
		t.Fatalf("STATUS %s: %q", folder, s)
	}
	validity, _ = strconv.Atoi(v[1])
	next, _ = strconv.Atoi(n[1])
	return validity, next
}

// TestMailIMAP: python's imaplib over STARTTLS and IMAPS: the usual
// session of a mail client against the Maildir on disk, UIDs kept across
// a restart, and a deletion made over POP3 seen by IMAP.
func TestMailIMAP(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "imap", "imaps", "pop3s")
	const box = "charline.durand"
	for i := 1; i <= 3; i++ {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)},
			message("bob@sender.example", addr(box), fmt.Sprintf("imap-%d", i), fmt.Sprintf("body %d\n", i)))
	}
	files := map[string]stored{}
	for _, f := range d.inbox(t, box) {
		files[f.header("Subject")] = f
	}
	p := startPy(t, d)

	// Port 143 before STARTTLS, legacy_plain_auth false: no login.
	p.connect("a", "imap")
	_, caps := p.must("a", "capability").imap()
	if c := strings.Join(caps, " "); !strings.Contains(c, "STARTTLS") || !strings.Contains(c, "LOGINDISABLED") {
		t.Errorf("CAPABILITY before STARTTLS: %q, want STARTTLS and LOGINDISABLED", c)
	}
	if r := p.call("a", "login", addr(box), charlinePassword); r.OK {
		t.Errorf("LOGIN without TLS accepted: %s", r)
	}
	if r := p.starttls("a"); !r.OK {
		t.Fatalf("STARTTLS: %s", r)
	}
	if r := p.call("a", "login", addr(box), "wrong-password"); r.OK {
		t.Errorf("LOGIN with a wrong password accepted: %s", r)
	}
	p.must("a", "login", addr(box), charlinePassword)
	if _, data := p.must("a", "select", "INBOX").imap(); len(data) != 1 || data[0] != "3" {
		t.Errorf("SELECT INBOX: %q, want 3 messages", data)
	}
	if _, data := p.must("a", "search", nil, "ALL").imap(); len(data) != 1 || data[0] != "1 2 3" {
		t.Errorf("SEARCH ALL: %q, want 1 2 3", data)
	}
	msgs := imapBySubject(t, p, "a")
	if len(msgs) != 3 {
		t.Fatalf("FETCH 1:*: %d messages, want 3", len(msgs))
	}
	for s, f := range msgs {
		if f.size() != len(files[s].data) {
			t.Errorf("%s: RFC822.SIZE %d, the file has %d octets", s, f.size(), len(files[s].data))
		}
		if len(f.flags()) != 0 {
			t.Errorf("%s: new message with flags %v", s, f.flags())
		}
	}
	seq := func(s string) string { return strconv.Itoa(msgs[s].seq) }
	if _, data := p.must("a", "search", nil, "SUBJECT", "imap-2").imap(); len(data) != 1 || data[0] != seq("imap-2") {
		t.Errorf("SEARCH SUBJECT imap-2: %q, want %s", data, seq("imap-2"))
	}
	full := p.must("a", "fetch", seq("imap-1"), "(BODY.PEEK[])").fetches(t)
	if len(full) != 1 || len(full[0].literals) != 1 || full[0].literals[0] != string(files["imap-1"].data) {
		t.Errorf("FETCH BODY.PEEK[] of imap-1: %+v, want the file's %q", full, files["imap-1"].data)
	}

	// STORE \Seen: the flag in the file name (Maildir "info").
	p.must("a", "store", seq("imap-1"), "+FLAGS", `(\Seen)`)
	for _, f := range d.inbox(t, box) {
		if f.header("Subject") == "imap-1" && !strings.HasSuffix(f.path, ":2,S") {
			t.Errorf("imap-1 is \\Seen but its file is %s", f.path)
		}
	}
	// COPY to a new folder.
	p.must("a", "create", "Archives")
	p.must("a", "copy", seq("imap-2"), "Archives")
	if arch := folderMessages(t, d.mailbox(box), "Archives"); len(arch) != 1 || arch[0].header("Subject") != "imap-2" {
		t.Errorf("after COPY imap-2 Archives the folder holds %d messages, want imap-2", len(arch))
	}
	// \Deleted and EXPUNGE.
	p.must("a", "store", seq("imap-3"), "+FLAGS", `(\Deleted)`)
	if _, data := p.must("a", "expunge").imap(); len(data) != 1 || data[0] != seq("imap-3") {
		t.Errorf("EXPUNGE: %q, want %s expunged", data, seq("imap-3"))
	}
	if ms := d.inbox(t, box); len(ms) != 2 || len(withHeader(ms, "Subject", "imap-3")) != 0 {
		t.Errorf("after EXPUNGE the inbox holds %d files, want 2 without imap-3", len(ms))
	}
	if _, data := p.must("a", "list").imap(); !strings.Contains(strings.Join(data, "\n"), "Archives") {
		t.Errorf("LIST: %q, no Archives", data)
	}
	before := uidsOf(imapBySubject(t, p, "a"))
	validity, next := imapStatus(t, p, "a", "INBOX")
	p.logout("a")

	// IMAPS: the same UIDs in a new session.
	p.imapLogin("b", "imaps", addr(box), charlinePassword)
	p.must("b", "select", "INBOX")
	if got := uidsOf(imapBySubject(t, p, "b")); !maps.Equal(got, before) {
		t.Errorf("UIDs in a new session %v, want %v", got, before)
	}
	if _, data := p.must("b", "select", "Archives").imap(); len(data) != 1 || data[0] != "1" {
		t.Errorf("SELECT Archives: %q, want 1 message", data)
	}
	p.logout("b")

	// A clean restart on the same data: same UIDVALIDITY, UIDs, flags.
	d.stop(t)
	d.start(t)
	p.use(d)
	p.imapLogin("c", "imaps", addr(box), charlinePassword)
	if v, n := imapStatus(t, p, "c", "INBOX"); v != validity || n < next {
		t.Errorf("after a restart UIDVALIDITY %d UIDNEXT %d, want %d and at least %d", v, n, validity, next)
	}
	p.must("c", "select", "INBOX")
	after := imapBySubject(t, p, "c")
	if got := uidsOf(after); !maps.Equal(got, before) {
		t.Errorf("UIDs after a restart %v, want %v", got, before)
	}
	if !slices.Contains(after["imap-1"].flags(), `\Seen`) {
		t.Errorf("imap-1 lost \\Seen across the restart: %v", after["imap-1"].flags())
	}
	// New mail after the restart: a UID above every earlier one.
	sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)}, message("bob@sender.example", addr(box), "imap-4", "four\n"))
	p.must("c", "noop")
	after = imapBySubject(t, p, "c")
	if u := after["imap-4"].uid(); u < next || u <= slices.Max(slices.Collect(maps.Values(before))) {
		t.Errorf("UID of a message delivered after the restart %d, want at least UIDNEXT %d and above %v", u, next, before)
	}

	// Cross-protocol: deleted over POP3 while IMAP has the inbox selected.
	p.untagged("c")
	p.popLogin("pop", "pop3s", addr(box), charlinePassword)
	victim := ""
	for n := 1; n <= 3 && victim == ""; n++ {
		_, head := p.call("pop", "top", n, 0).lines()
		for _, l := range head {
			if l == "Subject: imap-2" {
				victim = "imap-2"
				if r := p.call("pop", "dele", n); !r.OK {
					t.Fatalf("POP3 DELE %d: %s", n, r)
				}
			}
		}
	}
	if victim == "" {
		t.Fatal("POP3 does not show imap-2")
	}
	if r := p.call("pop", "quit"); !r.OK {
		t.Fatalf("POP3 QUIT: %s", r)
	}
	p.must("c", "noop")
	if u := p.untagged("c"); len(u["EXPUNGE"]) != 1 || u["EXPUNGE"][0] != strconv.Itoa(after["imap-2"].seq) {
		t.Errorf("NOOP after a POP3 deletion: untagged %v, want EXPUNGE %d", u, after["imap-2"].seq)
	}
	if got := imapBySubject(t, p, "c"); len(got) != 2 || got["imap-2"].uid() != 0 {
		t.Errorf("after a POP3 deletion and NOOP IMAP shows %v, want imap-1 and imap-4", slices.Collect(maps.Keys(got)))
	}
	p.imapLogin("d", "imaps", addr(box), charlinePassword)
	if _, data := p.must("d", "select", "INBOX").imap(); len(data) != 1 || data[0] != "2" {
		t.Errorf("SELECT after a POP3 deletion: %q, want 2 messages", data)
	}
	p.logout("d")
	p.logout("c")
}
