package pop3d

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
)

// Line lengths. RFC 2449 4 sets 255 octets for a command and 512 for a
// response line; clients are sloppier (long user names, SASL initial
// responses), so commands get some more room, and a SASL continuation
// (RFC 5034 4) more still: enough for a full-size password.
const (
	maxCommandLine  = 1000
	maxSASLResponse = 4096
	readBufferSize  = maxSASLResponse + 2
)

// errLineTooLong is returned by readLine for a line over the limit,
// whose whole has been read and dropped.
var errLineTooLong = errors.New("line too long")

// errShutdown is returned by readLine once the server stops.
var errShutdown = errors.New("server shutting down")

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// message is one message of the maildrop as the session sees it.
type message struct {
	uid       uint32
	key       string
	size      int64
	flags     []string
	deleted   bool // DELE'd in this session
	retrieved bool // RETR'd in this session: \Seen at QUIT
}

// session is one client connection.
type session struct {
	srv      *Server
	ctx      context.Context
	raw      net.Conn // the TCP connection, under TLS or not
	conn     net.Conn // what is read and written: raw or TLS over it
	br       *bufio.Reader
	bw       *bufio.Writer
	out      *replyWriter // under bw: the deadline of the answer under way
	remote   netip.Addr
	settings mailconf.Settings
	tls      bool
	log      *slog.Logger

	state        state
	user         string // from USER, waiting for PASS
	authFailures int
	badCommands  int

	// The maildrop, in the transaction state.
	address string
	root    string
	inbox   inbox
	msgs    []message
}

// handle runs the session of c until the client quits or is dropped.
func (s *Server) handle(ctx context.Context, c net.Conn, remote netip.Addr, implicitTLS bool) {
	sess := &session{
		srv:      s,
		ctx:      ctx,
		raw:      c,
		conn:     c,
		remote:   remote,
		settings: s.settings.Load(),
		log:      s.log.With("remote", remote.String()),
	}
	defer func() {
		// Under TLS this sends close_notify; Serve closes the raw
		// connection in any case.
		sess.conn.Close()
		if sess.root != "" {
			s.unlockMailbox(sess.root)
		}
	}()
	if implicitTLS {
		if !sess.startTLS() {
			return
		}
	} else {
		sess.setConn(c)
	}
	sess.log.Debug("pop3: connected", "tls", sess.tls)
	sess.reply("+OK %s POP3 server ready", sess.settings.Hostname)
	if sess.bw.Flush() != nil {
		return
	}
	for {
		line, err := sess.readLine(maxCommandLine)
		sess.answerWithin(0)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				sess.reply("-ERR line too long")
				if sess.bad() {
					return
				}
				if sess.bw.Flush() != nil {
					return
				}
				continue
			}
			if errors.Is(err, errShutdown) || ctx.Err() != nil {
				sess.reply("-ERR [SYS/TEMP] server shutting down")
				sess.bw.Flush()
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				// RFC 1939 3: close without a word.
				sess.log.Debug("pop3: idle timeout")
			}
			return
		}
		quit := sess.command(line)
		// Answers to pipelined commands (RFC 2449 6.6) go out together.
		if quit || sess.br.Buffered() == 0 {
			if err := sess.bw.Flush(); err != nil {
				return
			}
		}
		if quit {
			return
		}
	}
}

// setConn makes c the connection read and written.
func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.br = bufio.NewReaderSize(c, readBufferSize)
	s.out = &replyWriter{c: c, raw: s.raw}
	s.answerWithin(0)
	s.bw = bufio.NewWriterSize(s.out, 16<<10)
}

// answerWithin starts the deadline of the next answer: the idle timeout of
// the session's state, plus the time a client reading at MinReadRate needs
// for size bytes of message.
func (s *session) answerWithin(size int64) {
	d := s.idleTimeout() + time.Duration(size)*time.Second/time.Duration(s.srv.lim.minReadRate)
	s.out.end = time.Now().Add(d)
}

// idleTimeout is the time the client has to send a command, or to take
// an answer: AuthIdleTimeout before login, IdleTimeout after.
func (s *session) idleTimeout() time.Duration {
	if s.state == stateTransaction {
		return s.srv.lim.idle
	}
	return s.srv.lim.authIdle
}

// startTLS runs the server side of a TLS handshake on the raw connection,
// reporting whether it succeeded. Whatever the client sent before, and
// the old buffers hold, is dropped (RFC 2595 / the STARTTLS injection
// attack): the new reader starts empty.
func (s *session) startTLS() bool {
	tc := tls.Server(s.raw, s.srv.tls)
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.lim.authIdle)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Debug("pop3: TLS handshake", "err", err)
		return false
	}
	s.tls = true
	s.setConn(tc)
	return true
}

// replyWriter writes a session's answers within the deadline of the
// answer under way (see session.answerWithin), the same for all of its
// writes: a fresh deadline per write let a client reading a few bytes a
// minute hold a RETR for days.
type replyWriter struct {
	c   net.Conn
	raw net.Conn // the TCP connection under c (or the supervisor's wrapper of it)
	end time.Time
}

func (w *replyWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(w.end)
	n, err := w.c.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The client is cut off: its close resets the connection rather
		// than sending what the kernel still holds at the client's pace.
		if tc, ok := w.raw.(interface{ SetLinger(sec int) error }); ok {
			tc.SetLinger(0)
		}
	}
	return n, err
}

// readLine reads one line, without its line end (CRLF, or a bare LF from
// a sloppy client). A line over max octets is read to its end and
// dropped: errLineTooLong.
func (s *session) readLine(max int) ([]byte, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.idleTimeout()))
	// Checked after setting the deadline: Serve sets a past deadline
	// after cancelling ctx, so one of the two stops us.
	if s.ctx.Err() != nil {
		return nil, errShutdown
	}
	tooLong := false
	for {
		frag, err := s.br.ReadSlice('\n')
		switch {
		case err == nil:
			line := frag[:len(frag)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if tooLong || len(line) > max {
				return nil, errLineTooLong
			}
			return slices.Clone(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			tooLong = true
		default:
			if s.ctx.Err() != nil {
				return nil, errShutdown
			}
			return nil, err
		}
	}
}

func (s *session) reply(format string, args ...any) {
	fmt.Fprintf(s.bw, format, args...)
	s.bw.WriteString("\r\n")
}

// bad counts a bad command, reporting whether the session must end.
func (s *session) bad() bool {
	s.badCommands++
	if s.badCommands >= s.srv.lim.maxBadCommands {
		s.reply("-ERR too many bad commands, closing")
		s.bw.Flush()
		s.log.Info("pop3: too many bad commands")
		return true
	}
	return false
}

// command runs one command line, reporting whether the session ends.
func (s *session) command(line []byte) (quit bool) {
	cmd, err := parseCommand(line)
	if err != nil {
		s.reply("-ERR unknown command")
		return s.bad()
	}
	if s.state == stateAuthorization {
		// PASS must come right after USER (RFC 1939 7).
		user := s.user
		s.user = ""
		switch cmd.Name {
		case "CAPA":
			return s.capa(cmd)
		case "QUIT":
			s.reply("+OK %s POP3 server signing off", s.settings.Hostname)
			return true
		case "STLS":
			return s.stls(cmd)
		case "USER":
			return s.userCmd(cmd)
		case "PASS":
			return s.pass(cmd, user)
		case "AUTH":
			return s.authCmd(cmd)
		case "APOP":
			s.reply("-ERR APOP not supported")
			return s.bad()
		case "STAT", "LIST", "UIDL", "TOP", "RETR", "DELE", "RSET", "NOOP":
			s.reply("-ERR not authenticated")
			return s.bad()
		}
		s.reply("-ERR unknown command")
		return s.bad()
	}
	switch cmd.Name {
	case "CAPA":
		return s.capa(cmd)
	case "QUIT":
		return s.quit(cmd)
	case "STAT":
		return s.stat(cmd)
	case "LIST":
		return s.list(cmd, false)
	case "UIDL":
		return s.list(cmd, true)
	case "RETR":
		return s.retr(cmd)
	case "TOP":
		return s.top(cmd)
	case "DELE":
		return s.dele(cmd)
	case "RSET":
		return s.rset(cmd)
	case "NOOP":
		if len(cmd.Args) != 0 {
			return s.syntax()
		}
		s.reply("+OK")
		return false
	case "USER", "PASS", "AUTH", "APOP", "STLS":
		s.reply("-ERR already authenticated")
		return s.bad()
	}
	s.reply("-ERR unknown command")
	return s.bad()
}

func (s *session) syntax() bool {
	s.reply("-ERR syntax error")
	return s.bad()
}

// passwordAllowed applies the box's policy: passwords only under TLS, or
// from the LAN when legacy plain authentication is on.
func (s *session) passwordAllowed() bool {
	return s.settings.PasswordAuthAllowed(s.tls, s.remote)
}

const needTLS = "-ERR [AUTH] plaintext authentication is not allowed without TLS, use STLS"

func (s *session) capa(cmd command) bool {
	if len(cmd.Args) != 0 {
		return s.syntax()
	}
	s.reply("+OK capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		s.reply("%s", c)
	}
	if s.state == stateAuthorization {
		if s.passwordAllowed() {
			s.reply("USER")
			s.reply("SASL PLAIN")
		}
		if !s.tls && s.srv.tls != nil {
			s.reply("STLS")
		}
	}
	s.reply("IMPLEMENTATION MailFountain")
	s.reply(".")
	return false
}

func (s *session) stls(cmd command) bool {
	switch {
	case len(cmd.Args) != 0:
		return s.syntax()
	case s.tls:
		s.reply("-ERR already using TLS")
		return s.bad()
	case s.srv.tls == nil:
		s.reply("-ERR TLS not available")
		return s.bad()
	}
	s.reply("+OK begin TLS negotiation")
	if s.bw.Flush() != nil {
		return true
	}
	if n := s.br.Buffered(); n > 0 {
		s.log.Info("pop3: input after STLS dropped", "bytes", n)
	}
	// Nothing learnt in the clear survives (RFC 2595 4); the USER before
	// STLS is already forgotten, as after any command but PASS.
	return !s.startTLS()
}

func (s *session) userCmd(cmd command) bool {
	if !s.passwordAllowed() {
		s.reply(needTLS)
		return s.bad()
	}
	if len(cmd.Args) != 1 {
		return s.syntax()
	}
	s.user = cmd.Args[0]
	s.reply("+OK send your password")
	return false
}

func (s *session) pass(cmd command, user string) bool {
	if !s.passwordAllowed() {
		s.reply(needTLS)
		return s.bad()
	}
	if user == "" {
		s.reply("-ERR send USER first")
		return s.bad()
	}
	if cmd.Rest == "" {
		return s.syntax()
	}
	return s.login(user, cmd.Rest)
}

func (s *session) authCmd(cmd command) bool {
	if len(cmd.Args) == 0 {
		// Not in RFC 5034, but clients probe with it.
		s.reply("+OK SASL mechanisms follow")
		if s.passwordAllowed() {
			s.reply("PLAIN")
		}
		s.reply(".")
		return false
	}
	if len(cmd.Args) > 2 {
		return s.syntax()
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") {
		s.reply("-ERR unsupported authentication mechanism")
		return s.bad()
	}
	if !s.passwordAllowed() {
		s.reply(needTLS)
		return s.bad()
	}
	var resp string
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1]
		if resp == "=" { // an empty initial response (RFC 5034 4)
			resp = ""
		}
	} else {
		s.reply("+ ")
		if s.bw.Flush() != nil {
			return true
		}
		line, err := s.readLine(maxSASLResponse)
		if errors.Is(err, errLineTooLong) {
			s.reply("-ERR response too long")
			return s.bad()
		}
		if err != nil {
			return true
		}
		resp = string(line)
		if resp == "*" {
			s.reply("-ERR authentication cancelled")
			return false
		}
	}
	authzid, authcid, passwd, err := decodePlain(resp)
	if err != nil {
		s.reply("-ERR malformed SASL PLAIN response")
		return s.bad()
	}
	if authzid != "" && !strings.EqualFold(authzid, authcid) {
		// Nobody may act for another user: a failed login.
		return s.loginFailed(authcid, "authorization identity differs")
	}
	return s.login(authcid, passwd)
}

// login checks the credentials and opens the maildrop.
func (s *session) login(address, password string) bool {
	p, err := s.srv.auth.Login(s.ctx, "pop3", s.remote, address, password)
	switch {
	case errors.Is(err, auth.ErrTooManyFailures):
		s.log.Info("pop3: login refused, too many failures", "user", address)
		s.reply("-ERR [AUTH] too many failures, try later")
		return true
	case errors.Is(err, auth.ErrBadCredentials):
		return s.loginFailed(address, "bad credentials")
	case err != nil:
		s.log.Error("pop3: login", "user", address, "err", err)
		s.reply("-ERR [SYS/TEMP] authentication unavailable, try later")
		return s.ctx.Err() != nil
	}
	root := s.srv.mailboxes.MailboxPath(p.Domain, p.Account)
	if !s.srv.lockMailbox(root) {
		s.log.Info("pop3: mailbox in use", "user", p.Address)
		s.reply("-ERR [IN-USE] mailbox in use")
		return false
	}
	msgs, ib, err := s.openMaildrop(root)
	if err != nil {
		s.srv.unlockMailbox(root)
		s.log.Error("pop3: open maildrop", "user", p.Address, "err", err)
		s.reply("-ERR [SYS/TEMP] cannot open your mailbox, try later")
		return false
	}
	s.root, s.inbox, s.msgs, s.address = root, ib, msgs, p.Address
	s.state = stateTransaction
	s.log = s.log.With("user", p.Address)
	n, size := s.count()
	s.log.Info("pop3: login", "tls", s.tls, "messages", n)
	s.reply("+OK %s has %d messages (%d octets)", p.Address, n, size)
	return false
}

// loginFailed answers a failed login after a pause, and ends the session
// after too many.
func (s *session) loginFailed(address, why string) bool {
	s.authFailures++
	s.log.Info("pop3: login failed", "user", address, "reason", why, "failures", s.authFailures)
	t := time.NewTimer(s.srv.lim.failDelay)
	select {
	case <-t.C:
	case <-s.ctx.Done():
		t.Stop()
	}
	s.reply("-ERR [AUTH] invalid login")
	return s.authFailures >= s.srv.lim.maxAuthFailures
}

// openMaildrop takes the snapshot of the inbox the session works on: its
// message numbers hold until QUIT, whatever IMAP does meanwhile.
func (s *session) openMaildrop(root string) ([]message, inbox, error) {
	ib, err := s.srv.openInbox(root)
	if err != nil {
		return nil, nil, fmt.Errorf("open inbox of %s: %w", root, err)
	}
	snap, err := ib.Sync()
	if err != nil {
		return nil, nil, fmt.Errorf("sync inbox of %s: %w", root, err)
	}
	msgs := make([]message, len(snap.Messages))
	for i, m := range snap.Messages {
		msgs[i] = message{uid: m.UID, key: uidl(m.Key), size: m.Size, flags: m.Flags}
	}
	return msgs, ib, nil
}

// uidl is the unique-id of a message of that Maildir key: the key itself,
// unless a file dropped in by hand gave one that RFC 1939 7 forbids (1 to
// 70 characters from 0x21 to 0x7E); then a digest of it, as stable.
func uidl(key string) string {
	ok := len(key) >= 1 && len(key) <= 70
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] >= 0x21 && key[i] <= 0x7e
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "H" + hex.EncodeToString(sum[:])
}

// count returns the number and size of the messages not deleted.
func (s *session) count() (n int, size int64) {
	for _, m := range s.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

// msg finds the message a number names; it answers the client itself
// when there is none.
func (s *session) msg(arg string) (*message, int, bool) {
	n, ok := parseMsgNumber(arg)
	if !ok && (arg == "" || strings.Trim(arg, "0123456789") != "") {
		s.reply("-ERR invalid message number")
		return nil, 0, false
	}
	if !ok || n > len(s.msgs) || s.msgs[n-1].deleted {
		s.reply("-ERR no such message")
		return nil, 0, false
	}
	return &s.msgs[n-1], n, true
}

func (s *session) stat(cmd command) bool {
	if len(cmd.Args) != 0 {
		return s.syntax()
	}
	n, size := s.count()
	s.reply("+OK %d %d", n, size)
	return false
}

// list serves LIST and, with uidl, UIDL.
func (s *session) list(cmd command, uidl bool) bool {
	item := func(n int, m *message) string {
		if uidl {
			return strconv.Itoa(n) + " " + m.key
		}
		return strconv.Itoa(n) + " " + strconv.FormatInt(m.size, 10)
	}
	switch len(cmd.Args) {
	case 0:
		if uidl {
			s.reply("+OK unique-id listing follows")
		} else {
			n, size := s.count()
			s.reply("+OK %d messages (%d octets)", n, size)
		}
		for i := range s.msgs {
			if !s.msgs[i].deleted {
				s.reply("%s", item(i+1, &s.msgs[i]))
			}
		}
		s.reply(".")
	case 1:
		m, n, ok := s.msg(cmd.Args[0])
		if !ok {
			return false
		}
		s.reply("+OK %s", item(n, m))
	default:
		return s.syntax()
	}
	return false
}

func (s *session) dele(cmd command) bool {
	if len(cmd.Args) != 1 {
		return s.syntax()
	}
	m, n, ok := s.msg(cmd.Args[0])
	if !ok {
		return false
	}
	m.deleted = true
	s.reply("+OK message %d deleted", n)
	return false
}

func (s *session) rset(cmd command) bool {
	if len(cmd.Args) != 0 {
		return s.syntax()
	}
	for i := range s.msgs {
		s.msgs[i].deleted = false
	}
	n, size := s.count()
	s.reply("+OK maildrop has %d messages (%d octets)", n, size)
	return false
}

func (s *session) retr(cmd command) bool {
	if len(cmd.Args) != 1 {
		return s.syntax()
	}
	m, _, ok := s.msg(cmd.Args[0])
	if !ok {
		return false
	}
	sent, ok := s.send(m, -1, fmt.Sprintf("+OK %d octets", m.size))
	m.retrieved = m.retrieved || sent
	return !ok
}

func (s *session) top(cmd command) bool {
	if len(cmd.Args) != 2 {
		return s.syntax()
	}
	lines, ok := parseLineCount(cmd.Args[1])
	if !ok {
		return s.syntax()
	}
	m, _, ok := s.msg(cmd.Args[0])
	if !ok {
		return false
	}
	_, ok = s.send(m, lines, "+OK top of message follows")
	return !ok
}

// send answers RETR (bodyLines < 0) or TOP, streaming the message from
// its file. It reports whether the message went out, and ok false if the
// session must end: once the first line is out, a failure can only be
// told by dropping the connection, which the client sees as an
// incomplete answer rather than a short message.
func (s *session) send(m *message, bodyLines int, first string) (sent, ok bool) {
	r, err := s.inbox.Open(m.uid)
	if errors.Is(err, maildir.ErrNoMessage) {
		// Removed meanwhile, by IMAP or an expunge elsewhere.
		s.reply("-ERR no such message")
		return false, true
	}
	if err != nil {
		s.log.Error("pop3: open message", "uid", m.uid, "err", err)
		s.reply("-ERR [SYS/TEMP] cannot read message")
		return false, true
	}
	defer r.Close()
	s.answerWithin(m.size)
	s.reply("%s", first)
	if err := writeMessage(s.bw, r, bodyLines); err != nil {
		s.log.Error("pop3: send message", "uid", m.uid, "err", err)
		return false, false
	}
	return true, true
}

// writeMessage copies a message to w as a POP3 multi-line answer: lines
// end in CRLF, those starting with '.' get another (byte-stuffing), and
// ".\r\n" ends it. With bodyLines >= 0 it stops after the header, the
// blank line and that many body lines (TOP). It streams: a line longer
// than the buffer goes out in pieces.
func writeMessage(w *bufio.Writer, r io.Reader, bodyLines int) error {
	br := bufio.NewReaderSize(r, 32<<10)
	atStart := true    // at the start of a line
	pendingCR := false // a CR ended the last piece; is it a line end?
	inHeader := true
	for bodyLines != 0 || inHeader {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			if pendingCR && frag[0] != '\n' {
				// A CR inside the line, not its end.
				w.WriteByte('\r')
				atStart = false
			}
			pendingCR = false
			if atStart && frag[0] == '.' {
				w.WriteByte('.')
			}
			if frag[len(frag)-1] == '\n' {
				line := frag[:len(frag)-1]
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				w.Write(line)
				w.WriteString("\r\n")
				blank := atStart && len(line) == 0
				atStart = true
				switch {
				case bodyLines < 0:
				case inHeader:
					inHeader = !blank
				default:
					bodyLines--
				}
			} else {
				if frag[len(frag)-1] == '\r' {
					pendingCR = true
					frag = frag[:len(frag)-1]
				}
				if len(frag) > 0 {
					w.Write(frag)
					atStart = false
				}
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			if pendingCR {
				w.WriteByte('\r')
				atStart = false
			}
			if !atStart {
				w.WriteString("\r\n")
			}
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	w.WriteString(".\r\n")
	return nil
}

func (s *session) quit(cmd command) bool {
	if len(cmd.Args) != 0 {
		return s.syntax()
	}
	// The UPDATE state (RFC 1939 6): only now does anything change.
	var gone, seen []uint32
	for _, m := range s.msgs {
		switch {
		case m.deleted:
			gone = append(gone, m.uid)
		case m.retrieved && !slices.Contains(m.flags, maildir.FlagSeen):
			seen = append(seen, m.uid)
		}
	}
	// \Seen added to the flags the messages have now: the others (an IMAP
	// session's keywords, set since the login) stay.
	if len(seen) > 0 {
		if _, err := s.inbox.StoreFlags(seen, maildir.FlagsAdd, []string{maildir.FlagSeen}); err != nil {
			s.log.Warn("pop3: mark seen", "messages", len(seen), "err", err)
		}
	}
	if len(gone) > 0 {
		if err := s.inbox.Expunge(gone); err != nil {
			s.log.Error("pop3: expunge", "messages", len(gone), "err", err)
			s.reply("-ERR [SYS/TEMP] some deleted messages not removed")
			return true
		}
	}
	// Free the mailbox before saying so: a client that reconnects at
	// once must not find it in use.
	s.srv.unlockMailbox(s.root)
	s.root = ""
	n, _ := s.count()
	s.log.Info("pop3: quit", "deleted", len(gone), "left", n)
	s.reply("+OK %s POP3 server signing off (%d messages left)", s.settings.Hostname, n)
	return true
}
