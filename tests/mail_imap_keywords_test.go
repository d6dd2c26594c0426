package tests

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestMailIMAPKeywords: python's imaplib tags messages as Thunderbird does
// ($label1, $Junk, $Forwarded): the keywords are in the file names, shown
// to a second session, searched, copied, kept by a POP3 session that
// marks the messages read, by a delivery and by a restart.
func TestMailIMAPKeywords(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "imaps", "pop3s")
	const box = "charline.durand"
	for i := 1; i <= 2; i++ {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)},
			message("bob@sender.example", addr(box), fmt.Sprintf("kw-%d", i), fmt.Sprintf("body %d\n", i)))
	}
	p := startPy(t, d)
	p.imapLogin("a", "imaps", addr(box), charlinePassword)
	p.imapLogin("b", "imaps", addr(box), charlinePassword)
	p.must("a", "select", "INBOX")
	if u := p.untagged("a"); !slices.Contains(u["PERMANENTFLAGS"], `(\Answered \Deleted \Draft \Flagged \Seen \*)`) {
		t.Errorf("SELECT: PERMANENTFLAGS %q, want \\* for new keywords", u["PERMANENTFLAGS"])
	}
	p.must("b", "select", "INBOX")
	p.untagged("b")
	msgs := imapBySubject(t, p, "a")
	seq := func(s string) string { return fmt.Sprint(msgs[s].seq) }

	if _, data := p.must("a", "store", seq("kw-1"), "+FLAGS", "($label1 $Junk)").imap(); len(data) != 1 || !strings.Contains(data[0], "FLAGS ($Junk $label1)") {
		t.Errorf("STORE +FLAGS ($label1 $Junk): %q", data)
	}
	p.must("a", "store", seq("kw-2"), "+FLAGS", `($Forwarded \Seen)`)
	// The other session learns the keywords and the messages' flags.
	p.must("b", "noop")
	u := p.untagged("b")
	if f := u["FLAGS"]; len(f) == 0 || f[len(f)-1] != `(\Answered \Deleted \Draft \Flagged \Seen $label1 $Junk $Forwarded)` {
		t.Errorf("NOOP in the other session: FLAGS %q", f)
	}
	if f := strings.Join(u["FETCH"], "\n"); !strings.Contains(f, "FLAGS ($Junk $label1)") || !strings.Contains(f, `FLAGS ($Forwarded \Seen)`) {
		t.Errorf("NOOP in the other session: FETCH %q", u["FETCH"])
	}
	if _, data := p.must("b", "search", nil, "KEYWORD", "$junk").imap(); len(data) != 1 || data[0] != seq("kw-1") {
		t.Errorf("SEARCH KEYWORD $junk: %q, want %s", data, seq("kw-1"))
	}
	// In the file names, after the Maildir flags: one letter a keyword.
	infos := map[string]string{}
	for _, f := range d.inbox(t, box) {
		_, info, _ := strings.Cut(f.path, ":2,")
		infos[f.header("Subject")] = info
	}
	if infos["kw-1"] != "ab" || infos["kw-2"] != "Sc" {
		t.Errorf("file name flags %q, want kw-1 ab and kw-2 Sc", infos)
	}
	p.must("a", "create", "Archives")
	p.must("a", "copy", seq("kw-1"), "Archives")
	p.logout("a")
	p.logout("b")

	// POP3 reads both (\Seen at QUIT); a new message arrives.
	p.popLogin("pop", "pop3s", addr(box), charlinePassword)
	for n := 1; n <= 2; n++ {
		if r := p.call("pop", "retr", n); !r.OK {
			t.Fatalf("POP3 RETR %d: %s", n, r)
		}
	}
	if r := p.call("pop", "quit"); !r.OK {
		t.Fatalf("POP3 QUIT: %s", r)
	}
	sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)}, message("bob@sender.example", addr(box), "kw-3", "three\n"))

	d.stop(t)
	d.start(t)
	p.use(d)
	p.imapLogin("c", "imaps", addr(box), charlinePassword)
	p.must("c", "select", "INBOX")
	if u := p.untagged("c"); !slices.Contains(u["FLAGS"], `(\Answered \Deleted \Draft \Flagged \Seen $label1 $Junk $Forwarded)`) {
		t.Errorf("SELECT after a restart: FLAGS %q", u["FLAGS"])
	}
	want := map[string][]string{"kw-1": {"$Junk", "$label1", `\Seen`}, "kw-2": {"$Forwarded", `\Seen`}, "kw-3": nil}
	got := imapBySubject(t, p, "c")
	for s, w := range want {
		if !slices.Equal(got[s].flags(), w) {
			t.Errorf("%s after POP3, a delivery and a restart: %q, want %q", s, got[s].flags(), w)
		}
	}
	p.must("c", "select", "Archives")
	if got := imapBySubject(t, p, "c"); !slices.Equal(got["kw-1"].flags(), []string{"$Junk", "$label1"}) {
		t.Errorf("the copy in Archives: %q", got["kw-1"].flags())
	}
	p.logout("c")
}
