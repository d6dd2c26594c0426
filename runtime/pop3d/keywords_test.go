package pop3d

import (
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/maildir"
)

// TestQuitKeepsKeywords: the \Seen a POP3 session's QUIT sets on the
// messages it retrieved goes with the flags they have then, including
// the keywords (IMAP's $Junk...) another session set after the POP3
// login.
func TestQuitKeepsKeywords(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true})
	e.deliver("alice", msg1, msg2, msg3)
	inbox := e.mail.(realMail).folder(t, e.root("alice"))
	if _, err := inbox.StoreFlags([]uint32{1}, maildir.FlagsAdd, []string{"$Junk", maildir.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	c := e.dialGreeted()
	if got := c.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("login: %q", got)
	}
	// While the session is open, an IMAP client tags two messages.
	if _, err := inbox.StoreFlags([]uint32{1, 2}, maildir.FlagsAdd, []string{"$label1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "2"} {
		c.write("RETR " + n + "\r\n")
		if l := c.line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("RETR %s: %q", n, l)
		}
		for c.line() != "." {
		}
	}
	c.write("QUIT\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("QUIT: %q", l)
	}
	e.waitUnlocked()
	snap := e.snapshot("alice")
	want := [][]string{
		{"$Junk", "$label1", maildir.FlagFlagged, maildir.FlagSeen},
		{"$label1", maildir.FlagSeen},
		nil,
	}
	for i, m := range snap.Messages {
		if !slices.Equal(m.Flags, want[i]) {
			t.Errorf("message %d: %v, want %v", m.UID, m.Flags, want[i])
		}
	}
	if !slices.Equal(snap.Keywords, []string{"$Junk", "$label1"}) {
		t.Errorf("keywords %v", snap.Keywords)
	}
}
