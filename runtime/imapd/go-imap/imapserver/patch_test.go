package imapserver_test

// Tests of MailFountain's patches (see README.md): the server is fed a
// client's whole input, then the end of the connection, and what it
// answers is checked.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// scriptConn is a connection whose client sent input and then closed its
// side; what the server writes is kept.
type scriptConn struct {
	in     io.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (c *scriptConn) Read(b []byte) (int, error) { return c.in.Read(b) }

func (c *scriptConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(b)
}

func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// oneConn is a listener that accepts one connection.
type oneConn struct {
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	if c := l.c; c != nil {
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return &net.TCPAddr{} }

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Printf(format string, args ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

// stubSession accepts every login and has one empty mailbox, INBOX; its
// errors are all imap.Errors, so that a SERVERBUG answer is the server's
// own. It keeps the error its APPEND got from the literal.
type stubSession struct {
	appendErr error
}

var errStub = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "stub"}

func (s *stubSession) Close() error                          { return nil }
func (s *stubSession) Login(username, password string) error { return nil }
func (s *stubSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	return &imap.SelectData{UIDValidity: 1, UIDNext: 1}, nil
}
func (s *stubSession) Create(mailbox string, options *imap.CreateOptions) error { return errStub }
func (s *stubSession) Delete(mailbox string) error                              { return errStub }
func (s *stubSession) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	return errStub
}
func (s *stubSession) Subscribe(mailbox string) error   { return errStub }
func (s *stubSession) Unsubscribe(mailbox string) error { return errStub }
func (s *stubSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	return nil
}
func (s *stubSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	return nil, errStub
}
func (s *stubSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		s.appendErr = err
		return nil, fmt.Errorf("stub append: %w", err)
	}
	return &imap.AppendData{UID: 1, UIDValidity: 1}, nil
}
func (s *stubSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error { return nil }
func (s *stubSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	<-stop
	return nil
}
func (s *stubSession) Unselect() error { return nil }
func (s *stubSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	return nil
}
func (s *stubSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	return &imap.SearchData{}, nil
}
func (s *stubSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	return nil
}
func (s *stubSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	return nil
}
func (s *stubSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return nil, errStub
}
func (s *stubSession) AppendLimit() uint32 { return 10000 }

// serveScript runs a server over input and returns what it wrote, what it
// logged, and its session.
func serveScript(t testing.TB, input string) (out, logged string, sess *stubSession) {
	t.Helper()
	conn := &scriptConn{in: strings.NewReader(input), closed: make(chan struct{})}
	sess = &stubSession{}
	var log logBuffer
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return sess, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger:       &log,
		InsecureAuth: true,
	})
	ln := &oneConn{c: conn, done: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-conn.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server did not end the connection after its input:\n%q", input)
	}
	srv.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	log.mu.Lock()
	defer log.mu.Unlock()
	return conn.out.String(), log.b.String(), sess
}

const login = "l LOGIN user pass\r\n"

var injected = "\r\nz NOOP\r\n" // never answered: it is literal data

func TestPatchAnswers(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    []string // in the output, in order
		notWant []string
	}{
		{"literal over the limit", "a LOGIN {5000}\r\n",
			[]string{"a NO [TOOBIG]"}, []string{"+ ", "SERVERBUG"}},
		{"literal under the limit", "a LOGIN {4}\r\nuser {4}\r\npass\r\n",
			[]string{"+ Ready", "+ Ready", "a OK"}, nil},
		{"malformed literal", "a LOGIN {4x}\r\n",
			[]string{"a BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"non-synchronizing literal over the limit", "a LOGIN {5000+}\r\nuser" + injected,
			[]string{"a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "SERVERBUG"}},
		{"append over the limit", login + "a APPEND INBOX {10001}\r\n",
			[]string{"l OK", "a NO [TOOBIG]"}, []string{"+ "}},
		{"non-synchronizing append over the limit", login + "a APPEND INBOX {10001+}\r\nFrom: x" + injected,
			[]string{"l OK", "a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "+ "}},
		{"non-synchronizing append over 4096", login + "a APPEND INBOX {5000+}\r\nFrom: x" + injected,
			[]string{"l OK", "a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "+ "}},
		{"append before login", "a APPEND INBOX {10}\r\n",
			[]string{"a BAD"}, []string{"+ "}},
		{"append, text after the literal", login + "a APPEND INBOX {4}\r\nabcdx\r\n",
			[]string{"l OK", "+ Ready", "a BAD [CLIENTBUG]"}, nil},
		{"malformed modified UTF-7", login + "a CREATE \"&Jjo\"\r\n",
			[]string{"l OK", "a BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"NUL in a name", login + "a CREATE \"a\x00b\"\r\n",
			[]string{"l OK", "a BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"list pattern over the limit", login + "a LIST \"\" {5000}\r\n",
			[]string{"l OK", "a NO [TOOBIG]"}, []string{"+ "}},
		{"list pattern, malformed modified UTF-7", login + "a LIST \"\" \"&Jjo\"\r\n",
			[]string{"l OK", "a BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"error after a literal", login + "a CREATE {4}\r\n&Jjo\r\nb NOOP\r\n",
			[]string{"l OK", "+ Ready", "a BAD [CLIENTBUG]", "b OK"}, nil},
		{"error in a line with a non-synchronizing literal", login + "a CREATE \"a\tb\" {6+}\r\nz NOOP\r\nc NOOP {6+}\r\nz NOOP {6+}\r\nz NOOP\r\nd NOOP\r\n",
			[]string{"l OK", "a BAD [CLIENTBUG]", "c BAD [CLIENTBUG]", "d OK"}, []string{"z "}},
		{"error in a line with a non-synchronizing literal over 4096", login + "a CREATE \"a\tb\" {4097+}\r\n" + injected,
			[]string{"l OK", "a BAD [TOOBIG]", "* BYE"}, []string{"z "}},
		{"nesting too deep", login + "a SELECT INBOX\r\na SEARCH " + strings.Repeat("(", 1100) + "ALL" + strings.Repeat(")", 1100) + "\r\n",
			[]string{"l OK", "a OK", "a BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"bad sequence set", login + "a SELECT INBOX\r\na FETCH 1:x FLAGS\r\nb SEARCH 2:y\r\n",
			[]string{"l OK", "a OK", "a BAD [CLIENTBUG]", "b BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"bad dates", login + "a SELECT INBOX\r\na SEARCH SINCE 1-Foo-2020\r\nb APPEND INBOX \"x\" {1}\r\n",
			[]string{"l OK", "a OK", "a BAD [CLIENTBUG]", "b BAD [CLIENTBUG]"}, []string{"SERVERBUG"}},
		{"SASL initial response not base64", "a AUTHENTICATE PLAIN !!!\r\n",
			[]string{"a BAD"}, []string{"SERVERBUG"}},
		{"malformed SASL PLAIN", "a AUTHENTICATE PLAIN\r\ndGVzdA==\r\n",
			[]string{"+ ", "a BAD"}, []string{"SERVERBUG"}},
		{"SASL PLAIN", "a AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\n",
			[]string{"+ ", "a OK"}, nil},
		{"SASL response too long", "a AUTHENTICATE PLAIN\r\n" + strings.Repeat("A", 5000) + injected,
			[]string{"+ ", "a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "SERVERBUG"}},
		{"line over the limit", "a NOOP " + strings.Repeat("x", 60<<10) + injected,
			[]string{"a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "SERVERBUG"}},
		{"argument over the limit", "a LOGIN " + strings.Repeat("x", 60<<10) + injected,
			[]string{"a BAD [TOOBIG]", "* BYE"}, []string{"z OK", "SERVERBUG"}},
		{"connection ends in a command", "a LOGIN user",
			nil, []string{"a "}},
		{"connection ends in a literal", login + "a SELECT {10}\r\nINB",
			[]string{"l OK", "+ Ready"}, []string{"a "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, logged, _ := serveScript(t, tt.input)
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, "\r\n"+w)
				if i < 0 {
					t.Errorf("no %q (in order) in:\n%s", w, out)
					break
				}
				rest = rest[i+2:]
			}
			for _, nw := range tt.notWant {
				if strings.Contains(out, "\r\n"+nw) {
					t.Errorf("%q in:\n%s", nw, out)
				}
			}
			if strings.Contains(logged, "panic") {
				t.Errorf("logged:\n%s", logged)
			}
		})
	}
}

// TestPatchLiteralCutShort: an APPEND whose connection ends in the middle
// of the literal hands the session an error, not a short message.
func TestPatchLiteralCutShort(t *testing.T) {
	out, _, sess := serveScript(t, login+"a APPEND INBOX {100}\r\nSubject: cut\r\n")
	if !errors.Is(sess.appendErr, io.ErrUnexpectedEOF) {
		t.Errorf("APPEND got %v from the literal, want io.ErrUnexpectedEOF", sess.appendErr)
	}
	if strings.Contains(out, "\r\na ") {
		t.Errorf("answered a connection that ended:\n%s", out)
	}
}

// FuzzPatchClientInput: whatever a client sends, the server does not panic,
// ends the connection once its input ends, and does not answer SERVERBUG
// (the session above never fails; its APPEND fails only when the
// connection does, and that is not answered).
func FuzzPatchClientInput(f *testing.F) {
	for _, s := range []string{
		"a LOGIN {5000}\r\n", "a LOGIN {5000+}\r\nuser\r\nz NOOP\r\n", "a LOGIN {4}\r\nuser {4}\r\npass\r\n",
		login + "a APPEND INBOX {5}\r\nabcde\r\n", login + "a APPEND INBOX (\\Seen) \"1-Jan-2020 00:00:00 +0000\" {10001}\r\n",
		login + "a CREATE \"&Jjo\"\r\n", login + "a SELECT INBOX\r\na SEARCH OR (1:x) SINCE 1-Foo-2020\r\n",
		login + "a SELECT INBOX\r\na UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)]<0.10>)\r\n",
		login + "a SELECT INBOX\r\na STORE 1 +FLAGS (\\Seen)\r\nb IDLE\r\nDONE\r\n",
		login + "a LIST \"\" (\"*\" {3}\r\nabc) RETURN (STATUS (MESSAGES))\r\n", login + "a LIST \"\" \"&Jjo\"\r\n",
		"a AUTHENTICATE PLAIN\r\ndGVzdA==\r\n", "a AUTHENTICATE PLAIN =\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		out, logged, _ := serveScript(t, input)
		if strings.Contains(out, "SERVERBUG") || strings.Contains(logged, "panic") {
			t.Errorf("input %q:\n%s\nlogged:\n%s", input, out, logged)
		}
	})
}
