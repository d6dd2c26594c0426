// Package imapd is the box's IMAP server (IMAP4rev1 and IMAP4rev2, on 143
// with STARTTLS and on 993 with implicit TLS): the protocol comes from
// go-imap's imapserver, the mailboxes from runtime/maildir, so what POP3 or
// another session deletes disappears here too and new mail shows up.
// Flags are the system flags and keywords ($Junk, $Forwarded,
// Thunderbird's $label1...): PERMANENTFLAGS has \* while the folder has
// room for a new keyword (maildir.MaxKeywords), a keyword beyond is
// answered NO [LIMIT], a flag that is neither BAD; the other sessions see
// a change at their next command or while idling, a new keyword as an
// untagged FLAGS first.
//
// go-imap is kept patched in go-imap/ (its README.md): a client's
// malformed command is its error (BAD), never SERVERBUG; a literal over
// the limit is refused at once; when the rest of a client's input cannot
// be told from its next command, the answer is followed by a BYE.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
)

// Authenticator checks a user's full address and password.
type Authenticator interface {
	Login(ctx context.Context, service string, remote netip.Addr, address, password string) (*auth.Principal, error)
}

// Metrics hears of the connections the server admits and refuses, for
// the daemon's metrics; *metrics.Metrics is one. service is "imap" (Serve)
// or "imaps" (ServeTLS); reason is connlimit's (connlimit.TooMany,
// connlimit.TooManyFromIP).
type Metrics interface {
	Session(service string)
	Refused(service, reason string)
}

// noMetrics hears nothing: Config.Metrics nil.
type noMetrics struct{}

func (noMetrics) Session(string)         {}
func (noMetrics) Refused(string, string) {}

// Mailboxes tells where an account's mailbox lives; *store.Store
// satisfies it.
type Mailboxes interface {
	MailboxPath(domain, id string) string
}

// Limits bound what clients may use. Zero fields take the defaults.
type Limits struct {
	// MaxConns is the number of connections served at once (200).
	MaxConns int
	// MaxConnsPerIP is the number of connections from one address (20).
	MaxConnsPerIP int
	// IdleTimeout closes a connection silent for that long, IDLE included
	// (30 minutes, RFC 3501's minimum for the autologout timer).
	IdleTimeout time.Duration
	// AuthTimeout closes a connection not logged in after that long (60 s).
	AuthTimeout time.Duration
	// MaxLoginFailures is the number of failed logins after which the
	// session gets a BYE (3).
	MaxLoginFailures int
	// PollInterval is how often an idling session looks for changes (1 s).
	PollInterval time.Duration
	// ShutdownGrace is how long sessions get to end after the server's
	// context is done before their connections are closed (3 s).
	ShutdownGrace time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = 200
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 20
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 30 * time.Minute
	}
	if l.AuthTimeout <= 0 {
		l.AuthTimeout = time.Minute
	}
	if l.MaxLoginFailures <= 0 {
		l.MaxLoginFailures = 3
	}
	if l.PollInterval <= 0 {
		l.PollInterval = time.Second
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = 3 * time.Second
	}
	return l
}

// Config is what a Server needs.
type Config struct {
	// Settings are read on every connection (whether a client may log in
	// without TLS) and command (the largest message APPEND accepts).
	Settings *mailconf.Live
	// TLS is the server TLS configuration: STARTTLS on Serve, and
	// ServeTLS. Nil disables both.
	TLS     *tls.Config
	Maildir *maildir.Store
	Mailboxes
	Auth   Authenticator
	Logger *slog.Logger
	// Metrics, if not nil, hears of sessions and refused connections.
	Metrics Metrics
	Limits
}

// Server serves IMAP. Serve and ServeTLS may run at the same time, each on
// its own listener; connection limits are shared.
type Server struct {
	cfg Config // its Limits with the defaults
	log *slog.Logger

	conns *connlimit.Limiter // shared by both listeners

	mu      sync.Mutex
	subsMus map[string]*sync.Mutex // by mailbox root
}

// New returns a server; it serves nothing until Serve or ServeTLS.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Settings == nil:
		return nil, errors.New("imapd: no settings")
	case cfg.Maildir == nil:
		return nil, errors.New("imapd: no maildir store")
	case cfg.Mailboxes == nil:
		return nil, errors.New("imapd: no mailbox paths")
	case cfg.Auth == nil:
		return nil, errors.New("imapd: no authenticator")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Server{
		cfg:     cfg,
		log:     logger,
		conns:   connlimit.New(cfg.MaxConns, cfg.MaxConnsPerIP),
		subsMus: make(map[string]*sync.Mutex),
	}, nil
}

// Serve serves IMAP with STARTTLS on ln until ctx is done, then closes ln
// and the connections and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, false)
}

// ServeTLS serves IMAP over implicit TLS (port 993) on ln until ctx is
// done, then closes ln and the connections and returns nil.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLS == nil {
		ln.Close()
		return errors.New("imapd: ServeTLS without a TLS configuration")
	}
	return s.serve(ctx, ln, true)
}

// capabilities advertised, on top of those imapserver adds by itself
// (SASL-IR, LITERAL-, STARTTLS, ENABLE, IDLE, UNSELECT, UTF8=ACCEPT,
// APPENDLIMIT from the session). LITERAL+ is left out so that a too large
// APPEND is refused before the client sends it.
var capabilities = []imap.Cap{
	imap.CapIMAP4rev1, imap.CapIMAP4rev2,
	imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch, imap.CapSearchRes,
	imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
	imap.CapBinary, imap.CapChildren, imap.CapSpecialUse,
}

// instance is what one Serve call runs: two imapserver servers fed by its
// accept loop, one that allows password authentication without TLS (LAN
// clients when the settings allow it), one that does not, since
// imapserver decides that per server and the policy is per client.
type instance struct {
	srv      *Server
	ctx      context.Context
	plain    *imapserver.Server
	tlsOnly  *imapserver.Server
	plainLn  *chanListener
	tlsLn    *chanListener
	conns    sync.WaitGroup // handed-over connections until their session ends
	loops    sync.WaitGroup // imapserver accept loops and helpers
	mu       sync.Mutex
	sessions map[*session]struct{}
	raw      map[*trackedConn]struct{}
}

func (s *Server) serve(ctx context.Context, ln net.Listener, implicitTLS bool) error {
	in := &instance{
		srv:      s,
		ctx:      ctx,
		plainLn:  newChanListener(ln.Addr()),
		tlsLn:    newChanListener(ln.Addr()),
		sessions: make(map[*session]struct{}),
		raw:      make(map[*trackedConn]struct{}),
	}
	in.plain = imapserver.New(in.options(true))
	in.tlsOnly = imapserver.New(in.options(false))
	for _, p := range []struct {
		srv *imapserver.Server
		ln  *chanListener
	}{{in.plain, in.plainLn}, {in.tlsOnly, in.tlsLn}} {
		in.loops.Add(1)
		go func() {
			defer in.loops.Done()
			if err := p.srv.Serve(p.ln); err != nil {
				s.log.Error("imap: serve", "err", err)
			}
		}()
	}
	// imapserver's Close races with a Serve that has not reached its
	// accept loop yet: wait until both have.
	<-in.plainLn.accepting
	<-in.tlsLn.accepting

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var err error
	retrying := func(aerr error, delay time.Duration) {
		s.log.Warn("imap: accept", "err", aerr, "retry_in", delay)
	}
	for {
		raw, aerr := connlimit.Accept(ctx, ln, retrying)
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("imap accept: %w", aerr)
			}
			break
		}
		in.accept(raw, implicitTLS)
	}
	ln.Close()
	in.shutdown()
	return err
}

func (in *instance) options(insecureAuth bool) *imapserver.Options {
	caps := make(imap.CapSet)
	for _, c := range capabilities {
		caps[c] = struct{}{}
	}
	return &imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return in.newSession(c), nil, nil
		},
		Caps:         caps,
		Logger:       logAdapter{in.srv.log},
		TLSConfig:    in.srv.cfg.TLS,
		InsecureAuth: insecureAuth,
	}
}

// accept admits a new connection and hands it to one of the imapserver
// servers.
func (in *instance) accept(raw net.Conn, implicitTLS bool) {
	s := in.srv
	remote := connlimit.AddrOf(raw.RemoteAddr())
	service := "imap"
	if implicitTLS {
		service = "imaps"
	}
	if why := s.conns.Admit(remote); why != "" {
		s.cfg.Metrics.Refused(service, why)
		in.loops.Add(1)
		go func() {
			defer in.loops.Done()
			in.refuse(raw, implicitTLS)
		}()
		return
	}
	tc := &trackedConn{Conn: raw, idle: s.cfg.IdleTimeout}
	tc.release = func() {
		s.conns.Release(remote)
		in.mu.Lock()
		delete(in.raw, tc)
		in.mu.Unlock()
	}
	in.mu.Lock()
	in.raw[tc] = struct{}{}
	in.mu.Unlock()

	var c net.Conn = tc
	if implicitTLS {
		c = tls.Server(tc, s.cfg.TLS)
	}
	ln := in.tlsLn
	if !implicitTLS && plainAuthAllowed(s.cfg.Settings, remote) {
		ln = in.plainLn
	}
	in.conns.Add(1)
	if !ln.handoff(c) {
		c.Close()
		in.conns.Done()
		return
	}
	s.cfg.Metrics.Session(service)
}

// refuse tells a client over the limits to go away.
func (in *instance) refuse(raw net.Conn, implicitTLS bool) {
	defer raw.Close()
	in.srv.log.Info("imap: too many connections", "remote", raw.RemoteAddr().String())
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	var c net.Conn = raw
	if implicitTLS {
		c = tls.Server(raw, in.srv.cfg.TLS)
	}
	io.WriteString(c, "* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
}

// shutdown says BYE to the sessions, gives them a few seconds, then closes
// what is left and waits for every session to end.
func (in *instance) shutdown() {
	in.mu.Lock()
	for sess := range in.sessions {
		sess.bye("Server shutting down")
	}
	in.mu.Unlock()

	ended := make(chan struct{})
	go func() {
		in.conns.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(in.srv.cfg.ShutdownGrace):
	}
	in.plain.Close()
	in.tlsOnly.Close()
	// Connections handed over but not yet registered by imapserver escape
	// its Close: close them all from below.
	in.mu.Lock()
	for tc := range in.raw {
		tc.Conn.Close()
	}
	in.mu.Unlock()
	<-ended
	in.loops.Wait()
}

// plainAuthAllowed says whether a client may authenticate without TLS:
// from the LAN (loopback included) when the settings allow it.
func plainAuthAllowed(live *mailconf.Live, remote netip.Addr) bool {
	s := live.Load()
	return s.PasswordAuthAllowed(false, remote)
}

// subscriptionsLock serializes the changes of one mailbox's subscriptions
// file among the sessions of this server.
func (s *Server) subscriptionsLock(root string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subsMus[root]
	if m == nil {
		m = new(sync.Mutex)
		s.subsMus[root] = m
	}
	return m
}

// trackedConn is a client connection as accepted: it releases the
// connection's place in the limits once closed, and caps read deadlines
// to the idle timeout (imapserver's own are fixed at 30 s per command and
// 35 min between commands).
type trackedConn struct {
	net.Conn
	idle    time.Duration
	once    sync.Once
	release func()
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if limit := time.Now().Add(c.idle); t.IsZero() || t.After(limit) {
		t = limit
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// chanListener is the net.Listener an imapserver server accepts from: the
// connections our accept loop hands it.
type chanListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	once      sync.Once
	accepting chan struct{} // closed at the first Accept
	started   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{}), accepting: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	l.started.Do(func() { close(l.accepting) })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// handoff gives c to the accepting server; false if it has stopped.
func (l *chanListener) handoff(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// logAdapter sends imapserver's messages to slog. Failures to read a
// command are the clients' (a dropped connection, a timeout): debug.
type logAdapter struct{ log *slog.Logger }

func (a logAdapter) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case strings.HasPrefix(format, "failed to read command"), strings.HasPrefix(format, "failed to write"):
		a.log.Debug("imap: " + msg)
	case strings.HasPrefix(format, "panic"):
		a.log.Error("imap: " + msg)
	default:
		a.log.Warn("imap: " + msg)
	}
}
