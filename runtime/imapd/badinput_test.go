package imapd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// TestBadInput sends what a broken or hostile client sends: each is
// answered at once as the client's error (BAD, or NO with a code that
// says why, never SERVERBUG), and either the session goes on or the
// server says BYE and closes it, when the rest of the client's input can
// no longer be told apart from its next command. Data sent as a literal is
// never run as a command.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.setMessageLimit(10000)
	e.start()

	inject := "\r\nz CAPABILITY\r\n" // must never be answered
	tests := []struct {
		name   string
		login  bool
		send   string // after the login; the command's tag is "a"
		answer string // prefix of the tagged answer
		bye    bool   // the server then ends the session
	}{
		// Literals over the limit. A client waits for "+" before it sends
		// a synchronizing literal: refused, it sends nothing more.
		{"login, literal over the limit", false, "a LOGIN {70000}\r\n", "NO [TOOBIG]", false},
		{"login, second literal over the limit", false, "a LOGIN rene {5000}\r\n", "NO [TOOBIG]", false},
		{"login, malformed literal", false, "a LOGIN {7x}\r\n", "BAD", false},
		// A non-synchronizing literal's data follows at once (LITERAL-
		// allows 4096 bytes): the session cannot go on.
		{"login, non-synchronizing literal over 4096", false, "a LOGIN {70000+}\r\n" + strings.Repeat("x", 69990) + inject + " y\r\n", "BAD [TOOBIG]", true},
		{"login, non-synchronizing literal, small data", false, "a LOGIN {5000+}\r\n" + strings.Repeat("x", 20) + inject, "BAD [TOOBIG]", true},
		{"append over APPENDLIMIT", true, "a APPEND INBOX {10001}\r\n", "NO [TOOBIG]", false},
		{"append, non-synchronizing over APPENDLIMIT", true, "a APPEND INBOX {10001+}\r\nFrom: x" + inject, "BAD [TOOBIG]", true},
		{"append, non-synchronizing over 4096", true, "a APPEND INBOX {5000+}\r\nFrom: x" + inject, "BAD [TOOBIG]", true},
		{"append before login", false, "a APPEND INBOX {10}\r\n", "BAD", false},
		{"append before login, non-synchronizing", false, "a APPEND INBOX {10+}\r\n0123456789\r\n", "BAD", true},
		{"syntax error before a non-synchronizing literal", true, "a CREATE \"a\tb\" {14+}\r\nz CAPABILITY\r\n\r\n", "BAD", false},
		// Malformed arguments.
		{"create, malformed modified UTF-7", true, "a CREATE \"&Jjo\"\r\n", "BAD", false},
		{"create, NUL in the name", true, "a CREATE \"a\x00b\"\r\n", "BAD", false},
		{"select, NUL in the name", true, "a SELECT \"a\x00b\"\r\n", "BAD", false},
		{"status, malformed modified UTF-7", true, "a STATUS \"&-&\" (MESSAGES)\r\n", "BAD", false},
		{"rename to malformed modified UTF-7", true, "a RENAME Sent \"&AGE\"\r\n", "BAD", false},
		{"list, pattern over the limit", true, "a LIST \"\" {5000}\r\n", "NO [TOOBIG]", false},
		{"list, malformed modified UTF-7", true, "a LIST \"\" \"&Jjo\"\r\n", "BAD", false},
		{"search, nesting too deep", true, "a SEARCH " + strings.Repeat("(", 1100) + "ALL" + strings.Repeat(")", 1100) + "\r\n", "BAD", false},
		{"search, bad sequence set", true, "a SEARCH 1:x\r\n", "BAD", false},
		{"search, bad date", true, "a SEARCH SINCE 31-Foo-2024\r\n", "BAD", false},
		{"fetch, bad sequence set", true, "a FETCH 1:x FLAGS\r\n", "BAD", false},
		{"uid store, bad sequence set", true, "a UID STORE 0:: +FLAGS (\\Seen)\r\n", "BAD", false},
		{"append, bad date", true, "a APPEND INBOX \"31-Foo-2024 10:00:00 +0000\" {5}\r\n", "BAD", false},
		{"authenticate, initial response not base64", false, "a AUTHENTICATE PLAIN !!!!\r\n", "BAD", false},
		{"authenticate, malformed PLAIN response", false, "a AUTHENTICATE PLAIN dGVzdA==\r\n", "BAD", false},
		{"command line over the limit", true, "a NOOP " + strings.Repeat("x", 60<<10) + inject, "BAD [TOOBIG]", true},
		{"argument over the line limit", true, "a SELECT " + strings.Repeat("x", 60<<10) + inject, "BAD [TOOBIG]", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, e.tlsAddr, true)
			if tt.login {
				if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
					t.Fatal(st)
				}
			}
			// The data may be refused before it is all sent: write apart.
			go func() {
				r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				r.conn.Write([]byte(tt.send))
			}()
			untagged, st := r.answer("a", 5*time.Second)
			if !strings.HasPrefix(st, tt.answer) || strings.Contains(st, "SERVERBUG") {
				t.Errorf("answer %q, want %s…", st, tt.answer)
			}
			if len(untagged) > 0 {
				t.Errorf("untagged before the answer: %q", untagged)
			}
			if tt.bye {
				closed, got := r.closed(5 * time.Second)
				if !closed || !strings.HasPrefix(got, "* BYE") || strings.Contains(got, "CAPABILITY") {
					t.Errorf("after the answer: closed=%v, got %q; want a BYE and the end", closed, got)
				}
				return
			}
			// The session goes on, in the state it was.
			fmt.Fprintf(r.conn, "b NOOP\r\n")
			if lines, st := r.answer("b", 5*time.Second); !strings.HasPrefix(st, "OK") || len(lines) > 0 && strings.Contains(strings.Join(lines, "\n"), "CAPABILITY") {
				t.Errorf("NOOP after: %q %q", lines, st)
			}
			if !tt.login {
				if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
					t.Errorf("LOGIN after: %q", st)
				}
			}
		})
	}
	// Nothing of the above reached the mailbox.
	mb, err := e.md.Open(e.root("rene"))
	if err != nil {
		t.Fatal(err)
	}
	folders, err := mb.Folders()
	if err != nil {
		t.Fatal(err)
	}
	if want := "INBOX Drafts Junk Sent Trash"; strings.Join(folders, " ") != want {
		t.Errorf("folders %q, want %q", folders, want)
	}
	if snap, err := e.folder("rene", "INBOX").Sync(); err != nil || len(snap.Messages) != 0 {
		t.Errorf("INBOX: %d messages (%v), want none", len(snap.Messages), err)
	}
}

// TestAppendCutShort: a client that drops the connection in the middle of
// an APPEND's literal leaves no message behind, not a truncated one.
func TestAppendCutShort(t *testing.T) {
	e := newEnv(t)
	e.start()
	r := dialRaw(t, e.tlsAddr, true)
	r.cmd("LOGIN %s %s", testUser, testPassword)
	fmt.Fprintf(r.conn, "a APPEND INBOX {100}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	fmt.Fprintf(r.conn, "Subject: cut\r\n\r\nhalf a messa")
	r.conn.Close()

	// The server notices the end of the connection.
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.conns.Open() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.srv.conns.Open(); n != 0 {
		t.Fatalf("%d connections still open", n)
	}
	snap, err := e.folder("rene", "INBOX").Sync()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 0 {
		t.Errorf("INBOX holds %d messages after an APPEND cut short, want none", len(snap.Messages))
	}
}

// TestPythonImaplibBadInput: Python's imaplib meets the refusals above as
// a client does (a literal LOGIN over the limit, a malformed name, an
// APPEND over APPENDLIMIT) and goes on.
func TestPythonImaplibBadInput(t *testing.T) {
	python := testenv.NeedTool(t, "python3")
	e := newEnv(t)
	e.setMessageLimit(10000)
	e.start()
	_, tlsPort, _ := net.SplitHostPort(e.tlsAddr)
	cmd := exec.Command(python, "testdata/badinput.py")
	cmd.Env = append(os.Environ(), "IMAPS_PORT="+tlsPort, "IMAP_USER="+testUser, "IMAP_PASSWORD="+testPassword, "APPEND_LIMIT=10000")
	cmd.WaitDelay = time.Second
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill() // a refused literal left imaplib waiting
		}
	}()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Errorf("imaplib: %v\n%s", err, out)
	}
}

// TestStalledCommand: a client silent in the middle of a command is let go
// like an idle one, not answered as if the server had failed (SERVERBUG).
func TestStalledCommand(t *testing.T) {
	e := newEnv(t)
	e.limits.IdleTimeout = 500 * time.Millisecond
	e.start()
	for _, tt := range []struct{ name, send string }{
		{"in the line", "a LOGIN rene"},
		{"in a literal", "a SELECT {5}\r\nab"},
		{"in an append", "a APPEND INBOX {50}\r\nSubject: x\r\n"},
		{"idling", "a IDLE\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, e.tlsAddr, true)
			if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
				t.Fatal(st)
			}
			fmt.Fprint(r.conn, tt.send)
			closed, got := r.closed(5 * time.Second)
			if !closed || strings.Contains(got, "SERVERBUG") {
				t.Errorf("closed=%v, got %q; want the end, without SERVERBUG", closed, got)
			}
		})
	}
}
