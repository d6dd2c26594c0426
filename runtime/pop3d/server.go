// Package pop3d is the box's POP3 server (RFC 1939, with CAPA and
// response codes of RFC 2449, STLS of RFC 2595, SASL AUTH of RFC 5034):
// users log in with their full address and password and take their mail
// from the inbox of their mailbox.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
)

// Authenticator checks a login; *auth.Authenticator is one. Its errors
// wrap auth.ErrBadCredentials or auth.ErrTooManyFailures.
type Authenticator interface {
	Login(ctx context.Context, service string, remote netip.Addr, address, password string) (*auth.Principal, error)
}

// Metrics hears of the connections the server admits and refuses, for
// the daemon's metrics; *metrics.Metrics is one. service is "pop3" (Serve)
// or "pop3s" (ServeTLS); reason is connlimit's (connlimit.TooMany,
// connlimit.TooManyFromIP).
type Metrics interface {
	Session(service string)
	Refused(service, reason string)
}

// noMetrics hears nothing: Config.Metrics nil.
type noMetrics struct{}

func (noMetrics) Session(string)         {}
func (noMetrics) Refused(string, string) {}

// Mailboxes says where an account's mailbox is; *store.Store is one.
type Mailboxes interface {
	MailboxPath(domain, id string) string
}

// inbox is what a session needs of a mailbox's inbox; *maildir.Folder is
// one.
type inbox interface {
	Sync() (*maildir.Snapshot, error)
	Open(uid uint32) (io.ReadCloser, error)
	StoreFlags(uids []uint32, op maildir.FlagOp, flags []string) (map[uint32][]string, error)
	Expunge(uids []uint32) error
}

// Defaults of the limits of Config.
const (
	DefaultMaxConns        = 200
	DefaultMaxConnsPerIP   = 20
	DefaultIdleTimeout     = 10 * time.Minute // RFC 1939 3: at least 10 minutes
	DefaultAuthIdleTimeout = 60 * time.Second
	// DefaultMinReadRate is the slowest a client may read a message: a
	// 25 MB RETR gets IdleTimeout plus 53 minutes in all.
	DefaultMinReadRate      = 8 << 10
	DefaultMaxAuthFailures  = 3
	DefaultMaxBadCommands   = 10
	DefaultAuthFailureDelay = time.Second
	DefaultShutdownGrace    = 5 * time.Second
)

// Config is what a Server needs. Zero limits take the defaults above.
type Config struct {
	// Settings are read on every connection (host name, LAN, whether
	// password logins are allowed without TLS). Nil means the defaults.
	Settings *mailconf.Live
	// TLS is the server TLS configuration; nil means no STLS and no
	// ServeTLS.
	TLS *tls.Config
	// Maildir holds the mailboxes; sessions work on their inbox.
	Maildir *maildir.Store
	// Mailboxes says where a logged-in account's mailbox is.
	Mailboxes Mailboxes
	// Auth checks logins, for service "pop3".
	Auth Authenticator
	// Logger; nil discards. Passwords and message contents are never
	// logged.
	Logger *slog.Logger
	// Metrics, if not nil, hears of sessions and refused connections.
	Metrics Metrics

	// MaxConns bounds the connections of all clients, MaxConnsPerIP
	// those of one client address.
	MaxConns      int
	MaxConnsPerIP int
	// IdleTimeout is how long a logged-in client may stay silent;
	// AuthIdleTimeout the same before login, and the bound of a TLS
	// handshake.
	IdleTimeout     time.Duration
	AuthIdleTimeout time.Duration
	// Each answer must be out within IdleTimeout (AuthIdleTimeout before
	// login), an answer carrying a message (RETR, TOP) within one more
	// second per MinReadRate bytes of it (bytes per second): a client that
	// reads slowly gets time in proportion to the message, not a new
	// deadline at each write, and cannot hold a connection for days.
	MinReadRate int
	// MaxAuthFailures is the number of failed logins after which a
	// session is closed; MaxBadCommands the same for unknown commands,
	// bad arguments and overlong lines.
	MaxAuthFailures int
	MaxBadCommands  int
	// AuthFailureDelay is the pause before answering a failed login.
	AuthFailureDelay time.Duration
	// ShutdownGrace is how long a command in progress (a QUIT that
	// expunges, a RETR on its way) may run once Serve's ctx is done.
	ShutdownGrace time.Duration
}

// Server serves POP3. One Server may serve several listeners at once
// (ports 110 and 995); they share the connection limits and the mailbox
// locks.
type Server struct {
	settings  *mailconf.Live
	tls       *tls.Config
	openInbox func(root string) (inbox, error)
	mailboxes Mailboxes
	auth      Authenticator
	log       *slog.Logger
	metrics   Metrics
	lim       limits

	conns *connlimit.Limiter // shared by both listeners

	mu     sync.Mutex
	locked map[string]bool // mailbox roots held by a session
}

type limits struct {
	idle, authIdle                  time.Duration
	minReadRate                     int
	maxAuthFailures, maxBadCommands int
	failDelay, grace                time.Duration
}

// New returns a server over cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Maildir == nil {
		return nil, errors.New("new pop3 server: no maildir store")
	}
	md := cfg.Maildir
	return newServer(cfg, func(root string) (inbox, error) {
		mb, err := md.Open(root)
		if err != nil {
			return nil, err
		}
		f, err := mb.Folder(maildir.Inbox)
		if err != nil {
			return nil, err
		}
		return f, nil
	})
}

// newServer is New with the inboxes opened by open, so that tests of the
// state machine can run on a fake.
func newServer(cfg Config, open func(root string) (inbox, error)) (*Server, error) {
	if cfg.Mailboxes == nil || cfg.Auth == nil {
		return nil, errors.New("new pop3 server: Mailboxes and Auth are required")
	}
	s := &Server{
		settings:  cfg.Settings,
		tls:       cfg.TLS,
		openInbox: open,
		mailboxes: cfg.Mailboxes,
		auth:      cfg.Auth,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		locked:    map[string]bool{},
		conns:     connlimit.New(orDefault(cfg.MaxConns, DefaultMaxConns), orDefault(cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)),
		lim: limits{
			idle:            orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
			authIdle:        orDefault(cfg.AuthIdleTimeout, DefaultAuthIdleTimeout),
			minReadRate:     orDefault(cfg.MinReadRate, DefaultMinReadRate),
			maxAuthFailures: orDefault(cfg.MaxAuthFailures, DefaultMaxAuthFailures),
			maxBadCommands:  orDefault(cfg.MaxBadCommands, DefaultMaxBadCommands),
			failDelay:       orDefault(cfg.AuthFailureDelay, DefaultAuthFailureDelay),
			grace:           orDefault(cfg.ShutdownGrace, DefaultShutdownGrace),
		},
	}
	if s.settings == nil {
		s.settings = &mailconf.Live{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	return s, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve serves POP3 on ln (port 110), offering STLS when the server has a
// TLS configuration, until ctx is done; then it closes ln and the
// sessions (a dropped session deletes nothing) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, false)
}

// ServeTLS is Serve for POP3 over implicit TLS (port 995).
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	if s.tls == nil {
		ln.Close()
		return errors.New("serve pop3s: no TLS configuration")
	}
	return s.serve(ctx, ln, true)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, implicitTLS bool) error {
	sessCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		active = map[net.Conn]bool{}
		retErr error
	)
	retrying := func(err error, delay time.Duration) {
		s.log.Warn("pop3: accept", "err", err, "retry_in", delay)
	}
	service := "pop3"
	if implicitTLS {
		service = "pop3s"
	}
	for {
		c, err := connlimit.Accept(ctx, ln, retrying)
		if err != nil {
			if ctx.Err() == nil {
				retErr = fmt.Errorf("serve pop3 on %s: %w", ln.Addr(), err)
			}
			break
		}
		remote := connlimit.AddrOf(c.RemoteAddr())
		if why := s.conns.Admit(remote); why != "" {
			s.log.Info("pop3: connection refused", "remote", remote, "reason", why)
			s.metrics.Refused(service, why)
			// On the plain port the client is told why. A fresh
			// socket's send buffer is empty: this never blocks for
			// long, and the deadline bounds it anyway. A TLS client
			// expects a handshake, not a line: it is just closed.
			if !implicitTLS {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				io.WriteString(c, "-ERR [SYS/TEMP] "+why+"\r\n")
			}
			c.Close()
			continue
		}
		mu.Lock()
		active[c] = true
		mu.Unlock()
		s.metrics.Session(service)
		wg.Go(func() {
			defer func() {
				c.Close()
				mu.Lock()
				delete(active, c)
				mu.Unlock()
				s.conns.Release(remote)
			}()
			s.handle(sessCtx, c, remote, implicitTLS)
		})
	}
	ln.Close()
	cancel()

	// Wake the sessions waiting for a command; one running a command
	// finishes it, within the grace period.
	mu.Lock()
	for c := range active {
		c.SetReadDeadline(time.Now())
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.lim.grace):
		mu.Lock()
		for c := range active {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
	return retErr
}

// lockMailbox takes the mailbox at root for one session (RFC 1939 8:
// one session per maildrop), reporting false if another holds it.
func (s *Server) lockMailbox(root string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[root] {
		return false
	}
	s.locked[root] = true
	return true
}

func (s *Server) unlockMailbox(root string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locked, root)
}
