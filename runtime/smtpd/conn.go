package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"mailfountain.dev/mailfountain/runtime/mailconf"
)

// writeGrace is how long after the end of the session lifetime the
// server may still write its last reply.
const writeGrace = 5 * time.Second

// conn is one client connection. go-smtp's settings (host name, size
// limit, timeouts) are fields of its Server, so each connection gets a
// go-smtp Server of its own, made from the settings of the moment, that
// serves that one connection.
type conn struct {
	s        *Server
	kind     kind
	remote   netip.Addr
	settings mailconf.Settings
	// tooLarge is the reply to a message over the size limit.
	tooLarge *smtp.SMTPError
	raw      *rawConn
	served   net.Conn // raw, or the TLS connection over it on port 465
	ln       *oneConnListener
	srv      *smtp.Server
	// ctx ends when the connection closes; it is not the context of
	// Serve, so that a message in DATA may finish after that one is done.
	ctx    context.Context
	cancel context.CancelFunc
	// inData is set while a message is being received or delivered.
	inData atomic.Bool
	// killed is set once the server decided to close the connection.
	killed atomic.Bool
	// closeAfterReply asks the observer to close the connection once the
	// next reply is out (the session cannot: go-smtp writes it).
	closeAfterReply atomic.Bool
	// refusalLogged is set when the session logged the refusal that its
	// next reply carries; the observer logs the others (those go-smtp
	// makes itself: SIZE at MAIL, too many recipients, bad syntax...).
	refusalLogged atomic.Bool

	// lifetimeEnd is when the session must be over (SessionLifetime).
	lifetimeEnd time.Time

	rdnsDone chan struct{} // closed when rdnsName is known
	rdnsName string

	// Owned by go-smtp's goroutine of the connection (the observer and
	// the session callbacks run there).
	smtpConn *smtp.Conn
	upgraded bool // STARTTLS was accepted
	commands int
	errors   int
}

func (s *Server) newConn(parent context.Context, nc net.Conn, k kind, remote netip.Addr) *conn {
	set := s.cfg.Settings.Load()
	set.Hostname = hostnameOr(set.Hostname)
	set.MaxMessageBytes = set.MessageLimit()
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	c := &conn{
		s: s, kind: k, remote: remote, settings: set,
		ctx: ctx, cancel: cancel,
		rdnsDone: make(chan struct{}),
	}
	now := time.Now()
	c.lifetimeEnd = now.Add(s.cfg.SessionLifetime)
	end := c.lifetimeEnd
	if k != kindMX {
		// Until it logs in (session.login lifts it).
		end = capAt(now.Add(s.cfg.AuthTimeout), end)
	}
	c.raw = &rawConn{Conn: nc, in: s.getReadBuffer(nc)}
	c.raw.setEnd(end)
	c.served = c.raw
	if k == kindSubmissions {
		c.served = tls.Server(c.raw, s.cfg.TLS)
	}
	c.ln = &oneConnListener{conn: c.served, closed: make(chan struct{})}
	c.raw.onClose = func() {
		cancel()
		c.ln.Close()
	}

	srv := smtp.NewServer(smtp.BackendFunc(c.newSession))
	srv.Domain = set.Hostname
	srv.MaxMessageBytes = set.MaxMessageBytes
	c.tooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message size exceeds the " + sizeLimit(set.MaxMessageBytes) + " limit"}
	srv.TooLarge = c.tooLarge
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	// The session decides whether AUTH is offered (AuthMechanisms) and
	// answers 538 itself: go-smtp's own refusal is 523.
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = s.cfg.IdleTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	if k != kindSubmissions {
		srv.TLSConfig = s.cfg.TLS
	}
	srv.ErrorLog = errorLog{log: s.log, remote: remote.String()}
	srv.Debug = (*observer)(c)
	c.srv = srv
	return c
}

// sizeLimit writes a message size limit for the 552 reply: in megabytes
// when it is a whole number of them, as the settings give it
// (max_message_mb, 2^20 bytes each), else in bytes.
func sizeLimit(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MB"
	}
	return strconv.FormatInt(n, 10) + "-byte"
}

// serve runs the SMTP session and returns once it is over and every
// goroutine of the connection has ended.
func (c *conn) serve() {
	if c.remote.IsLoopback() {
		close(c.rdnsDone)
	} else {
		go c.lookupName()
	}
	c.srv.Serve(c.ln)
	// The connection is closed (Serve returned because its listener
	// was); wait for go-smtp's goroutine of the connection.
	c.srv.Shutdown(context.Background())
	c.raw.Close()
	<-c.rdnsDone
	// Nothing reads the connection any more.
	c.s.putReadBuffer(c.raw.in)
	c.raw.in = nil
}

// readBuffer is the size of the buffer under go-smtp's own (4 KiB): a
// message of a few tens of KiB comes in one read from the socket instead
// of one per 4 KiB.
const readBuffer = 32 << 10

func (s *Server) getReadBuffer(nc net.Conn) *bufio.Reader {
	if br, ok := s.readBufs.Get().(*bufio.Reader); ok {
		br.Reset(nc)
		return br
	}
	return bufio.NewReaderSize(nc, readBuffer)
}

func (s *Server) putReadBuffer(br *bufio.Reader) {
	if br != nil {
		br.Reset(nil)
		s.readBufs.Put(br)
	}
}

// close closes the connection; the session ends at once (a delivery in
// progress sees its context canceled).
func (c *conn) close() {
	c.raw.Close()
}

// lookupName does the reverse DNS of the client, for the Received field.
func (c *conn) lookupName() {
	defer close(c.rdnsDone)
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.RDNSTimeout)
	defer cancel()
	names, err := c.s.cfg.Resolver.LookupAddr(ctx, c.remote.String())
	if err == nil && len(names) > 0 {
		c.rdnsName = cleanHostname(names[0])
	}
}

// clientName is the client's name for the Received field: its reverse
// DNS name, "localhost" for loopback, or "unknown".
func (c *conn) clientName() string {
	if c.remote.IsLoopback() {
		return "localhost"
	}
	select {
	case <-c.rdnsDone:
	case <-c.ctx.Done():
		return "unknown"
	}
	if c.rdnsName == "" {
		return "unknown"
	}
	return c.rdnsName
}

// kill closes the connection after telling the client why.
func (c *conn) kill(why string) {
	if c.killed.Swap(true) {
		return
	}
	c.s.log.Info("smtp session closed", "listener", c.kind.String(), "remote", c.remote.String(), "reason", why)
	var w net.Conn
	switch {
	case c.smtpConn != nil:
		w = c.smtpConn.Conn()
	case !c.upgraded:
		w = c.served
	}
	if w != nil {
		w.SetWriteDeadline(time.Now().Add(writeGrace))
		io.WriteString(w, "421 4.7.0 "+c.settings.Hostname+" "+why+", closing connection\r\n")
		// Written here, not through go-smtp: the observer does not see it.
		c.s.cfg.Metrics.Reply(c.kind.String(), 421)
	}
	c.raw.Close()
}

// observer sees, through go-smtp's Debug writer, what the server reads and
// writes on the connection (in clear, also under TLS). It counts the
// replies the server sends to bound the commands and errors of a session.
// go-smtp writes both directions to it; a reply is told from client input
// because it comes right after a write on the raw connection.
type observer conn

func (o *observer) Write(p []byte) (int, error) {
	c := (*conn)(o)
	if c.raw.wrote.Swap(false) {
		c.reply(p)
	}
	return len(p), nil
}

// reply counts one reply of the server; p starts with its line.
func (c *conn) reply(p []byte) {
	if len(p) < 4 || p[3] != ' ' || !isDigit(p[0]) || !isDigit(p[1]) || !isDigit(p[2]) {
		return // a line of a multiline reply, or not a reply
	}
	code := int(p[0]-'0')*100 + int(p[1]-'0')*10 + int(p[2]-'0')
	c.s.cfg.Metrics.Reply(c.kind.String(), code)
	if logged := c.refusalLogged.Swap(false); code >= 400 && !logged {
		c.s.log.Info("smtp refusal", "listener", c.kind.String(), "remote", c.remote.String(),
			"reply", printable(strings.TrimRight(string(p), "\r\n")))
	}
	// 421 closes the connection (RFC 5321 3.8). After a failed read of
	// the message data, what the client sends next must not be taken for
	// commands either.
	if code == 421 || c.closeAfterReply.Load() {
		c.killed.Store(true)
		c.raw.Close()
		return
	}
	switch code {
	case 220:
		c.upgraded = c.upgraded || bytes.HasPrefix(p, []byte("220 2.0.0 Ready to start TLS"))
		return
	case 221, 334, 354:
		return // goodbyes and intermediate replies
	}
	c.commands++
	if code >= 500 {
		c.errors++
	}
	if bytes.HasPrefix(p, acceptedReply) {
		// A client that keeps delivering mail is bounded by the session
		// lifetime, not by the number of its commands.
		c.commands = 0
	}
	switch {
	case c.killed.Load():
	case c.errors >= c.s.cfg.MaxErrors:
		c.kill("Too many errors")
	case c.commands >= c.s.cfg.MaxCommands:
		c.kill("Too many commands")
	}
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// rawConn is the client's TCP connection. Every deadline set on it, also
// through a TLS connection over it, is capped by the end of the session
// lifetime, and read deadlines by the end of the message being received;
// closing it ends the session.
//
// go-smtp sets a read deadline once per command line (ReadTimeout from
// the moment it waits for the line), none while it reads message data,
// and a write deadline per reply.
type rawConn struct {
	net.Conn
	// end caps every deadline (Unix nanoseconds): the end of the session
	// lifetime, or sooner on submission until the client logs in.
	end atomic.Int64
	// dataEnd is the end of the message data being received (Unix
	// nanoseconds), 0 when none is: see boundReads. Set by the session,
	// which may run in a goroutine of its own (BDAT).
	dataEnd atomic.Int64
	in      *bufio.Reader // reads Conn; owned by go-smtp's goroutine
	wrote   atomic.Bool   // last operation was a write (see observer)
	once    sync.Once
	onClose func()
}

func (r *rawConn) Read(b []byte) (int, error) {
	n, err := r.in.Read(b)
	r.wrote.Store(false)
	return n, err
}

func (r *rawConn) Write(b []byte) (int, error) {
	r.wrote.Store(true)
	return r.Conn.Write(b)
}

func (r *rawConn) Close() error {
	err := r.Conn.Close()
	r.once.Do(r.onClose)
	return err
}

func capAt(t, end time.Time) time.Time {
	if t.IsZero() || t.After(end) {
		return end
	}
	return t
}

func (r *rawConn) SetDeadline(t time.Time) error {
	if err := r.SetReadDeadline(t); err != nil {
		return err
	}
	return r.SetWriteDeadline(t)
}

// setEnd makes t the cap of every deadline from the next one set.
func (r *rawConn) setEnd(t time.Time) { r.end.Store(t.UnixNano()) }

func (r *rawConn) SetReadDeadline(t time.Time) error {
	end := r.end.Load()
	if d := r.dataEnd.Load(); d != 0 && d < end {
		end = d
	}
	return r.Conn.SetReadDeadline(capAt(t, time.Unix(0, end)))
}

// boundReads makes t the read deadline, and the cap of those go-smtp sets
// (the BDAT commands between chunks), until boundReads(time.Time{}) lifts
// the cap; that one leaves the deadline as it is, for go-smtp sets the
// next one before it reads a command.
func (r *rawConn) boundReads(t time.Time) {
	if t.IsZero() {
		r.dataEnd.Store(0)
		return
	}
	r.dataEnd.Store(t.UnixNano())
	r.SetReadDeadline(t)
}

func (r *rawConn) SetWriteDeadline(t time.Time) error {
	return r.Conn.SetWriteDeadline(capAt(t, time.Unix(0, r.end.Load()).Add(writeGrace)))
}

// oneConnListener hands one connection to a go-smtp Server, then blocks
// until closed (when the connection is), so that Serve returns.
type oneConnListener struct {
	mu     sync.Mutex
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	select {
	case <-l.closed:
		if c != nil {
			c.Close()
		}
		return nil, net.ErrClosed
	default:
	}
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }

// errorLog takes go-smtp's reports (connection errors, panics) to slog.
type errorLog struct {
	log    *slog.Logger
	remote string
}

func (e errorLog) Printf(format string, v ...any) { e.print(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) print(msg string) {
	level := slog.LevelDebug
	if strings.HasPrefix(msg, "panic") {
		level = slog.LevelError
	}
	e.log.Log(context.Background(), level, "smtp: "+msg, "remote", e.remote)
}
