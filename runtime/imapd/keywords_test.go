package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const systemFlagList = `\Answered \Deleted \Draft \Flagged \Seen`

// has checks that lines hold want, in that order (others may come
// between).
func has(t *testing.T, what string, lines []string, want ...string) {
	t.Helper()
	i := 0
	for _, l := range lines {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("%s: %q, want %q in that order", what, lines, want)
	}
}

// appendMsg appends a message with flags through go-imap's client.
func appendMsg(t *testing.T, c *imapclient.Client, folder string, flags ...imap.Flag) (*imap.AppendData, error) {
	t.Helper()
	msg := testMessage(9, "appended", "b")
	ac := c.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: flags})
	ac.Write([]byte(msg))
	ac.Close()
	return ac.Wait()
}

// TestKeywords: keywords stored with STORE (+FLAGS, -FLAGS, FLAGS, mixed
// with system flags, in any case) and APPEND, kept by COPY and MOVE,
// searched, listed by FLAGS and PERMANENTFLAGS, shown to the other
// session at its next NOOP, and all of it still there after a restart.
func TestKeywords(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.deliver(testMessage(1, "m1", "b"))
	e.deliver(testMessage(2, "m2", "b"))
	a, b := e.loginRaw(), e.loginRaw()
	has(t, "SELECT", a.ok("SELECT INBOX"), "* FLAGS ("+systemFlagList+")",
		`* OK [PERMANENTFLAGS (`+systemFlagList+` \*)] Permanent flags`)
	b.ok("SELECT INBOX")

	// A new keyword: the FETCH answer, and FLAGS (before the tagged OK).
	if got := a.ok(`STORE 1 +FLAGS ($Important \Seen)`); !slices.Equal(got, []string{
		`* 1 FETCH (UID 1 FLAGS ($Important \Seen))`,
		"* FLAGS (" + systemFlagList + " $Important)",
	}) {
		t.Errorf("STORE +FLAGS: %q", got)
	}
	// The other session: FLAGS, then the FETCH that uses it.
	if got := b.ok("NOOP"); !slices.Equal(got, []string{
		"* FLAGS (" + systemFlagList + " $Important)",
		`* 1 FETCH (UID 1 FLAGS ($Important \Seen))`,
	}) {
		t.Errorf("NOOP in the other session: %q", got)
	}
	// Keywords are case-insensitive: the first spelling stays.
	a.ok(`STORE 2 +FLAGS ($label1)`)
	if got := a.ok(`STORE 1 +FLAGS.SILENT ($LABEL1 $important)`); len(got) != 0 {
		t.Errorf("STORE +FLAGS.SILENT of known keywords: %q", got)
	}
	has(t, "FETCH", a.ok("FETCH 1:* (FLAGS)"), `* 1 FETCH (UID 1 FLAGS ($Important $label1 \Seen))`, `* 2 FETCH (UID 2 FLAGS ($label1))`)
	has(t, "NOOP", b.ok("NOOP"), "* FLAGS ("+systemFlagList+" $Important $label1)",
		`* 1 FETCH (UID 1 FLAGS ($Important $label1 \Seen))`, `* 2 FETCH (UID 2 FLAGS ($label1))`)

	searches := []struct{ criteria, want string }{
		{"KEYWORD $important", "* SEARCH 1"},
		{"UNKEYWORD $Important", "* SEARCH 2"},
		{"KEYWORD $LABEL1", "* SEARCH 1 2"},
		{"KEYWORD $label1 SEEN", "* SEARCH 1"},
		{"KEYWORD $Unknown", "* SEARCH"},
		{"NOT KEYWORD $label1", "* SEARCH"},
		{"OR KEYWORD $Important UNSEEN", "* SEARCH 1 2"},
	}
	for _, s := range searches {
		if got := b.ok("SEARCH %s", s.criteria); !slices.Equal(got, []string{s.want}) {
			t.Errorf("SEARCH %s: %q, want %s", s.criteria, got, s.want)
		}
	}

	// -FLAGS and FLAGS, system flags and keywords mixed; \Recent, which
	// clients cannot set, is ignored.
	has(t, "-FLAGS", a.ok(`STORE 1 -FLAGS ($IMPORTANT \Seen)`), `* 1 FETCH (UID 1 FLAGS ($label1))`)
	has(t, "FLAGS", a.ok(`STORE 2 FLAGS (\Flagged $Forwarded \Recent)`), `* 2 FETCH (UID 2 FLAGS ($Forwarded \Flagged))`)
	has(t, "NOOP", b.ok("NOOP"), "* FLAGS ("+systemFlagList+" $Important $label1 $Forwarded)",
		`* 1 FETCH (UID 1 FLAGS ($label1))`, `* 2 FETCH (UID 2 FLAGS ($Forwarded \Flagged))`)

	// APPEND with keywords; COPY and MOVE keep them.
	c := e.login(nil)
	if _, err := appendMsg(t, c, "INBOX", "$Junk", imap.FlagSeen, "$label1"); err != nil {
		t.Fatal(err)
	}
	has(t, "NOOP after APPEND", b.ok("NOOP"), "* FLAGS ("+systemFlagList+" $Important $label1 $Forwarded $Junk)", "* 3 EXISTS")
	has(t, "FETCH", b.ok("FETCH 3 (FLAGS)"), `* 3 FETCH (UID 3 FLAGS ($Junk $label1 \Seen))`)
	a.ok("CREATE Archives")
	a.ok("COPY 1 Archives")
	a.ok("MOVE 2:3 Archives")
	has(t, "SELECT Archives", a.ok("SELECT Archives"), "* FLAGS ("+systemFlagList+" $label1 $Forwarded $Junk)")
	has(t, "FETCH in Archives", a.ok("FETCH 1:* (FLAGS)"), `* 1 FETCH (UID 1 FLAGS ($label1))`,
		`* 2 FETCH (UID 2 FLAGS ($Forwarded \Flagged))`, `* 3 FETCH (UID 3 FLAGS ($Junk $label1 \Seen))`)

	// A restart: the keywords, their list, the flags of each message.
	c.Close()
	e.shutdown()
	e.start()
	r := e.loginRaw()
	has(t, "SELECT after a restart", r.ok("SELECT INBOX"), "* FLAGS ("+systemFlagList+" $Important $label1 $Forwarded $Junk)",
		`* OK [PERMANENTFLAGS (`+systemFlagList+` $Important $label1 $Forwarded $Junk \*)] Permanent flags`)
	has(t, "FETCH after a restart", r.ok("FETCH 1:* (FLAGS)"), `* 1 FETCH (UID 1 FLAGS ($label1))`)
	has(t, "EXAMINE Archives", r.ok("EXAMINE Archives"), "* FLAGS ("+systemFlagList+" $label1 $Forwarded $Junk)",
		"* OK [PERMANENTFLAGS ()] Permanent flags")
	has(t, "FETCH in Archives after a restart", r.ok("FETCH 1:* (FLAGS)"), `* 1 FETCH (UID 1 FLAGS ($label1))`,
		`* 2 FETCH (UID 2 FLAGS ($Forwarded \Flagged))`, `* 3 FETCH (UID 3 FLAGS ($Junk $label1 \Seen))`)
}

// TestKeywordsRefused: a flag that can be neither stored nor ignored is a
// BAD, a keyword beyond the folder's room a NO [LIMIT]; nothing changes.
func TestKeywordsRefused(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.deliver(testMessage(1, "m1", "b"))
	r := e.loginRaw()
	r.ok("SELECT INBOX")
	bad := []string{`\Foo`, `\*`, "caf\xc3\xa9", strings.Repeat("x", 101)}
	for _, f := range bad {
		if _, st := r.cmd(`STORE 1 +FLAGS ($ok \Seen %s)`, f); !strings.HasPrefix(st, "BAD") {
			t.Errorf("STORE +FLAGS %q: %s, want BAD", f, st)
		}
	}
	if got := r.ok("FETCH 1 (FLAGS)"); !slices.Equal(got, []string{"* 1 FETCH (UID 1 FLAGS ())"}) {
		t.Errorf("after refused STOREs: %q", got)
	}
	c := e.login(nil)
	if _, err := appendMsg(t, c, "INBOX", `\Foo`); imapErrType(err) != imap.StatusResponseTypeBad {
		t.Errorf("APPEND with \\Foo: %v, want BAD", err)
	}

	// Fill the inbox's 26 letters: no more \* in PERMANENTFLAGS, and a
	// 27th keyword is refused, by STORE, APPEND and COPY.
	var kws []string
	for i := range 26 {
		kws = append(kws, fmt.Sprintf("$k%d", i))
	}
	r.ok("STORE 1 +FLAGS.SILENT (%s)", strings.Join(kws, " "))
	has(t, "SELECT a full folder", r.ok("SELECT INBOX"),
		`* OK [PERMANENTFLAGS (`+systemFlagList+" "+strings.Join(kws, " ")+`)] Permanent flags`)
	if _, st := r.cmd("STORE 1 +FLAGS ($one-more)"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Errorf("STORE of a 27th keyword: %s, want NO [LIMIT]", st)
	}
	if _, err := appendMsg(t, c, "INBOX", "$one-more"); imapCode(err) != imap.ResponseCodeLimit {
		t.Errorf("APPEND of a 27th keyword: %v, want NO [LIMIT]", err)
	}
	if _, err := appendMsg(t, c, "Sent", "$one-more"); err != nil {
		t.Fatal(err)
	}
	r.ok("SELECT Sent")
	if _, st := r.cmd("COPY 1 INBOX"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Errorf("COPY of a 27th keyword: %s, want NO [LIMIT]", st)
	}
	if _, st := r.cmd("MOVE 1 INBOX"); !strings.HasPrefix(st, "NO [LIMIT]") {
		t.Errorf("MOVE of a 27th keyword: %s, want NO [LIMIT]", st)
	}
	has(t, "Sent after a refused MOVE", r.ok("FETCH 1:* (FLAGS)"), "* 1 FETCH (UID 1 FLAGS ($one-more))")
	has(t, "INBOX after refused APPEND, COPY and MOVE", r.ok("STATUS INBOX (MESSAGES)"), "* STATUS INBOX (MESSAGES 1)")
	// Known keywords still go, in any case.
	r.ok("SELECT INBOX")
	has(t, "STORE of known keywords in a full folder", r.ok("STORE 1 FLAGS ($K3 $k25)"), `* 1 FETCH (UID 1 FLAGS ($k25 $k3))`)
}

// TestKeywordsIdle: a keyword set by another session shows to an idling
// client: FLAGS with the new keyword, then FETCH.
func TestKeywordsIdle(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.deliver(testMessage(1, "m", "b"))
	mailboxFlags := make(chan []imap.Flag, 10)
	fetched := make(chan fetchedFlags, 10)
	c := e.login(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.Flags != nil {
				mailboxFlags <- d.Flags
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			if buf, err := m.Collect(); err == nil {
				fetched <- fetchedFlags{buf.SeqNum, buf.Flags}
			}
		},
	}})
	e.selectInbox(c)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	other := e.login(nil)
	e.selectInbox(other)
	if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$label3"}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case flags := <-mailboxFlags:
		if !slices.Contains(flags, "$label3") || !slices.Contains(flags, imap.FlagSeen) {
			t.Errorf("FLAGS while idling: %v", flags)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no FLAGS while idling")
	}
	select {
	case m := <-fetched:
		if m.seq != 1 || !slices.Equal(m.flags, []imap.Flag{"$label3"}) {
			t.Errorf("FETCH while idling: %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no FETCH while idling")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}
