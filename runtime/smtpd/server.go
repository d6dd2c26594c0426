package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/store"
)

// Directory is what the server reads of the mail directory; *store.Store
// is one. Lookups hit it on every recipient, so changes apply at once.
type Directory interface {
	Domain(ctx context.Context, name string) (*store.Domain, error)
	LookupAddress(ctx context.Context, local, domain string) (*store.Address, error)
	MailboxPath(domain, id string) string
}

// Deliverer writes a message into the inboxes of mailbox roots, all or
// nothing; *maildir.Store is one. key names the message by what the
// client sent (32 lowercase hex digits: see the package documentation):
// if a delivery of that key reached the mailboxes just before a crash,
// the client never had its 250 and sends the message again; then
// DeliverOnce writes nothing and says duplicate, once per key.
type Deliverer interface {
	DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (duplicate bool, err error)
}

// Authenticator checks a login; *auth.Authenticator is one. Its errors
// wrap auth.ErrBadCredentials or auth.ErrTooManyFailures.
type Authenticator interface {
	Login(ctx context.Context, service string, remote netip.Addr, address, password string) (*auth.Principal, error)
}

// Verifier checks SPF, DKIM and DMARC of a message received on the MX
// (msg as received, without the fields the server adds) and returns the
// Authentication-Results header field to prepend, complete with its name
// ("Authentication-Results: <authservID>; ..."), or "" to add nothing.
// *mailauth.Verifier is one.
type Verifier interface {
	Verify(ctx context.Context, in mailauth.Input, msg io.Reader) (header string)
}

// Queue takes mail for addresses outside the box; *queue.Queue is one.
// Enqueue returns once the message is durably queued (on disk, fsync'd)
// for env's recipients; msg has the Received field the server added but
// no Return-Path. It must be idempotent by env.Key: a message whose key
// is already queued adds nothing (and returns nil), so that a client
// that lost the 250 and sends again gets no second copy out.
type Queue interface {
	Enqueue(ctx context.Context, env queue.Envelope, msg io.Reader) (id string, err error)
}

// SRS reverses the box's SRS addresses (bounces to mail the box
// forwarded); *srs.Rewriter is one. Reverse returns the address the
// bounce goes to, or an error for an address that is forged, malformed,
// expired or of another domain.
type SRS interface {
	Reverse(addr string) (string, error)
}

// Resolver looks up the name of a client address (reverse DNS);
// *net.Resolver is one.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Metrics hears what the server does, for the daemon's metrics;
// *metrics.Metrics is one. service is the listener: "mx", "submission"
// or "submissions". The calls come from the connections' goroutines: they
// must be quick and safe for concurrent use.
type Metrics interface {
	// Session: a connection was admitted.
	Session(service string)
	// Refused: a connection was refused by a limit; reason is
	// connlimit's (connlimit.TooMany, connlimit.TooManyFromIP).
	Refused(service, reason string)
	// Reply: the server sent a reply (the last line of a multiline one).
	Reply(service string, code int)
	// Delivery: a message was received whole; result is one of the
	// Delivery constants.
	Delivery(service, result string)
}

// Results of a message received whole, for Metrics.Delivery.
const (
	DeliveryDelivered = "delivered" // stored (or queued), 250
	DeliveryDuplicate = "duplicate" // stored before a restart already, 250
	DeliveryRefused   = "refused"   // refused for its content or size, 5xx
	DeliveryFailed    = "failed"    // could not be stored or checked, 4xx
)

// noMetrics hears nothing: Config.Metrics nil.
type noMetrics struct{}

func (noMetrics) Session(string)          {}
func (noMetrics) Refused(string, string)  {}
func (noMetrics) Reply(string, int)       {}
func (noMetrics) Delivery(string, string) {}

// Defaults of the limits of Config (see the package documentation).
const (
	DefaultMaxRecipients       = 100
	DefaultMaxLineLength       = 2000
	DefaultMaxCommands         = 1000
	DefaultMaxErrors           = 20
	DefaultIdleTimeout         = 2 * time.Minute
	DefaultCommandTimeout      = 5 * time.Minute
	DefaultDataTimeout         = 10 * time.Minute
	DefaultWriteTimeout        = 2 * time.Minute
	DefaultSessionLifetime     = 30 * time.Minute
	DefaultAuthTimeout         = time.Minute
	DefaultMaxConnections      = 200
	DefaultMaxConnectionsPerIP = 50
	// Submission has a pool of its own (see Config): the box's users,
	// fewer than the world, and a few devices behind one address.
	DefaultMaxSubmissionConnections      = 100
	DefaultMaxSubmissionConnectionsPerIP = 20
	DefaultMemoryBuffer                  = 1 << 20
	DefaultShutdownGrace                 = 5 * time.Second
	DefaultRDNSTimeout                   = 2 * time.Second
	DefaultVerifyTimeout                 = 30 * time.Second
	// MaxRedirectDepth bounds the nesting of redirections.
	MaxRedirectDepth = 8
)

// Config is what a Server needs. Zero limits take the defaults above.
type Config struct {
	// Settings are read on every connection (host name, LAN, legacy
	// plain auth, size limit); nil means mailconf.Default().
	Settings *mailconf.Live
	// TLS is the server configuration of STARTTLS and of port 465; nil
	// means no STARTTLS, and ServeSubmissions refuses to run.
	TLS       *tls.Config
	Directory Directory
	Deliverer Deliverer
	// Auth is required by ServeSubmission and ServeSubmissions.
	Auth Authenticator
	// Verifier, if not nil, adds Authentication-Results on the MX (not
	// for loopback clients: the box itself).
	Verifier Verifier
	// VerifyLoopback runs the Verifier for loopback clients too: for
	// tests, and for a box that receives its mail through a relay on
	// the same host.
	VerifyLoopback bool
	// Queue, if not nil, takes mail for other domains (submission,
	// redirections that point outside, bounces to SRS addresses); nil
	// answers 451 4.3.0.
	Queue Queue
	// SRS, if not nil, reverses the SRS addresses of the box's domains
	// that bounces come back to; nil: they are unknown users (550).
	SRS SRS
	// Resolver does reverse DNS of clients; nil means net.DefaultResolver.
	Resolver Resolver
	Logger   *slog.Logger
	// Metrics, if not nil, hears of sessions, refused connections,
	// replies and deliveries.
	Metrics Metrics
	// TempDir holds messages larger than MemoryBuffer while they are
	// received; "" means os.TempDir().
	TempDir string

	MaxRecipients   int
	MaxLineLength   int
	MaxCommands     int
	MaxErrors       int
	IdleTimeout     time.Duration
	CommandTimeout  time.Duration
	DataTimeout     time.Duration
	WriteTimeout    time.Duration
	SessionLifetime time.Duration
	// AuthTimeout bounds a submission session until it logs in, from its
	// connection: strangers who never log in hold a slot of submission's
	// pool that long, not a whole SessionLifetime.
	AuthTimeout time.Duration
	// MaxConnections and MaxConnectionsPerIP bound the MX (port 25);
	// MaxSubmissionConnections and MaxSubmissionConnectionsPerIP bound
	// submission (587 and 465 together), so that strangers holding every
	// slot of the MX do not keep the box's users from sending.
	MaxConnections                int
	MaxConnectionsPerIP           int
	MaxSubmissionConnections      int
	MaxSubmissionConnectionsPerIP int
	MemoryBuffer                  int
	ShutdownGrace                 time.Duration
	RDNSTimeout                   time.Duration
	VerifyTimeout                 time.Duration
}

// Server is the SMTP server. One Server hosts the MX and the submission
// listeners at once; the MX and submission have connection limits of
// their own.
type Server struct {
	cfg Config
	log *slog.Logger
	// idPrefix and seq make message ids unique across restarts.
	idPrefix string
	seq      atomic.Uint64
	spool    spoolPool
	// dataStates holds *dataState; readBufs *bufio.Reader.
	dataStates sync.Pool
	readBufs   sync.Pool

	// mxConns counts the MX's connections, subConns those of 587 and
	// 465; loopback clients (local programs) count only in the totals.
	mxConns, subConns *connlimit.Limiter
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Directory == nil {
		return nil, errors.New("smtpd: no directory")
	}
	if cfg.Deliverer == nil {
		return nil, errors.New("smtpd: no deliverer")
	}
	if cfg.Settings == nil {
		cfg.Settings = &mailconf.Live{}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	setDefault(&cfg.MaxRecipients, DefaultMaxRecipients)
	setDefault(&cfg.MaxLineLength, DefaultMaxLineLength)
	setDefault(&cfg.MaxCommands, DefaultMaxCommands)
	setDefault(&cfg.MaxErrors, DefaultMaxErrors)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.CommandTimeout, DefaultCommandTimeout)
	setDefault(&cfg.DataTimeout, DefaultDataTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.SessionLifetime, DefaultSessionLifetime)
	setDefault(&cfg.AuthTimeout, DefaultAuthTimeout)
	setDefault(&cfg.MaxConnections, DefaultMaxConnections)
	setDefault(&cfg.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	setDefault(&cfg.MaxSubmissionConnections, DefaultMaxSubmissionConnections)
	setDefault(&cfg.MaxSubmissionConnectionsPerIP, DefaultMaxSubmissionConnectionsPerIP)
	setDefault(&cfg.MemoryBuffer, DefaultMemoryBuffer)
	setDefault(&cfg.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&cfg.RDNSTimeout, DefaultRDNSTimeout)
	setDefault(&cfg.VerifyTimeout, DefaultVerifyTimeout)
	return &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		idPrefix: strconv.FormatInt(time.Now().UnixMilli(), 36),
		spool:    spoolPool{limit: cfg.MemoryBuffer, dir: cfg.TempDir},
		mxConns:  connlimit.New(cfg.MaxConnections, cfg.MaxConnectionsPerIP).ExemptLoopback(),
		subConns: connlimit.New(cfg.MaxSubmissionConnections, cfg.MaxSubmissionConnectionsPerIP).ExemptLoopback(),
	}, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// kind is what a listener serves.
type kind int

const (
	kindMX kind = iota
	kindSubmission
	kindSubmissions
)

func (k kind) String() string {
	switch k {
	case kindSubmission:
		return "submission"
	case kindSubmissions:
		return "submissions"
	}
	return "mx"
}

// ServeMX serves the MX on ln (port 25): mail for the box's domains, no
// AUTH, STARTTLS offered when Config.TLS is set. It returns nil once ctx
// is done and every connection is closed.
func (s *Server) ServeMX(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, kindMX)
}

// ServeSubmission serves message submission on ln (port 587): STARTTLS,
// AUTH required before MAIL.
func (s *Server) ServeSubmission(ctx context.Context, ln net.Listener) error {
	if s.cfg.Auth == nil {
		ln.Close()
		return errors.New("smtpd: submission needs an authenticator")
	}
	return s.serve(ctx, ln, kindSubmission)
}

// ServeSubmissions serves message submission over implicit TLS on ln
// (port 465), which it wraps: AUTH required before MAIL.
func (s *Server) ServeSubmissions(ctx context.Context, ln net.Listener) error {
	if s.cfg.Auth == nil || s.cfg.TLS == nil {
		ln.Close()
		return errors.New("smtpd: submissions needs an authenticator and a TLS configuration")
	}
	return s.serve(ctx, ln, kindSubmissions)
}

// serve accepts connections until ctx is done or ln fails, then closes
// the idle connections, gives those in DATA ShutdownGrace to finish and
// returns once every connection is gone.
func (s *Server) serve(ctx context.Context, ln net.Listener, k kind) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		mu       sync.Mutex
		conns    = map[*conn]struct{}{}
		draining bool
		wg       sync.WaitGroup
	)
	var acceptErr error
	retrying := func(err error, delay time.Duration) {
		s.log.Warn("smtp accept", "listener", k.String(), "err", err, "retry_in", delay)
	}
	for {
		nc, err := connlimit.Accept(ctx, ln, retrying)
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("smtp %s: accept: %w", k, err)
			}
			break
		}
		remote := connlimit.AddrOf(nc.RemoteAddr())
		if reason := s.admit(k, remote); reason != "" {
			s.log.Info("smtp connection refused", "listener", k.String(), "remote", remote.String(), "reason", reason)
			s.cfg.Metrics.Refused(k.String(), reason)
			s.reject(nc, k)
			continue
		}
		c := s.newConn(ctx, nc, k, remote)
		mu.Lock()
		if draining {
			mu.Unlock()
			c.close()
			s.release(k, remote)
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		s.cfg.Metrics.Session(k.String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.release(k, remote)
			c.serve()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	ln.Close()

	mu.Lock()
	draining = true
	for c := range conns {
		if c.inData.Load() {
			c.closeAfterReply.Store(true) // the reply to its DATA
		} else {
			c.close()
		}
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(s.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		mu.Lock()
		for c := range conns {
			c.close()
		}
		mu.Unlock()
		<-done
	}
	return acceptErr
}

// conns is the connection pool of a listener.
func (s *Server) conns(k kind) *connlimit.Limiter {
	if k == kindMX {
		return s.mxConns
	}
	return s.subConns
}

// admit counts a new connection from remote on a listener of kind k, or
// says why it is refused.
func (s *Server) admit(k kind, remote netip.Addr) string { return s.conns(k).Admit(remote) }

func (s *Server) release(k kind, remote netip.Addr) { s.conns(k).Release(remote) }

// reject tells a client over the limits to come back later.
func (s *Server) reject(nc net.Conn, k kind) {
	defer nc.Close()
	if k == kindSubmissions {
		return
	}
	host := s.cfg.Settings.Load().Hostname
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(nc, "421 4.7.0 "+hostnameOr(host)+" Too many connections, try again later\r\n")
}

func hostnameOr(h string) string {
	if h == "" {
		return "localhost"
	}
	return h
}

// newID returns a new message id, unique in this process and across
// restarts.
func (s *Server) newID() string {
	return s.idPrefix + "." + strconv.FormatUint(s.seq.Add(1), 36)
}
