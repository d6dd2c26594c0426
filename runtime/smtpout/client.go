package smtpout

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/mtasts"
)

// Resolver finds where mail goes; *mailauth.Resolver is one. LookupMXRecords
// tells a null MX (a record with Host ""), NODATA (an error matching
// mailauth.ErrNotFound) and NXDOMAIN (mailauth.IsNXDomain) apart; every
// other error is temporary.
type Resolver interface {
	LookupMXRecords(ctx context.Context, name string) ([]mailauth.MX, error)
	// LookupAddrs gives a host's addresses, IPv4 first.
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
}

// Metrics hears what the client does, for the daemon's metrics;
// *metrics.Metrics is one.
type Metrics interface {
	// OutboundConnection: a connection was opened (reused false) or
	// taken from the idle ones (reused true); tls says whether it is
	// encrypted.
	OutboundConnection(reused, tls bool)
	// OutboundRecipient: what became of one recipient. route is "direct"
	// or "relay"; result "delivered", "temporary", "permanent" or
	// "blocked" (a block answer, temporary or not).
	OutboundRecipient(route, result string)
	// MTASTSRefused: an MX host was not used because the destination's
	// MTA-STS policy in mode enforce refused it.
	MTASTSRefused()
}

// noMetrics hears nothing: Config.Metrics nil.
type noMetrics struct{}

func (noMetrics) OutboundConnection(bool, bool)    {}
func (noMetrics) OutboundRecipient(string, string) {}
func (noMetrics) MTASTSRefused()                   {}

// Relay is the smarthost.
type Relay struct {
	Host string // a name (its certificate is checked against it) or an address
	// Port 465 is implicit TLS (RFC 8314); any other port requires
	// STARTTLS. The certificate is always verified (Config.RootCAs).
	Port     int
	Username string // AUTH PLAIN (or LOGIN) when set
	// Password gives the password when a connection logs in (not at
	// every Send: it may be read from a file); nil is an empty one.
	Password func() (string, error)
	// FallbackOnly: direct mode with a smarthost for messages a
	// destination refused for the box's address (Message.ViaRelay); the
	// others go directly. False: relay mode, everything goes through it.
	FallbackOnly bool
}

func (r *Relay) addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Defaults of Config's limits.
const (
	DefaultPort               = 25
	DefaultIdleTimeout        = 5 * time.Second
	DefaultMaxIdlePerHost     = 4
	DefaultMaxMessagesPerConn = 100
	DefaultConnectTimeout     = 30 * time.Second
	DefaultCommandTimeout     = 5 * time.Minute  // RFC 5321 §4.5.3.2
	DefaultDataTimeout        = 10 * time.Minute // the final dot, RFC 5321 §4.5.3.2.6
	DefaultSessionTimeout     = 30 * time.Minute
)

// Config is what a Client needs from its caller. Zero limits take the
// defaults above.
type Config struct {
	Resolver Resolver // required
	// Port of the remote MX hosts (mailfountaind --remote-port); 0 is 25.
	Port int
	// Hostname is the name given in EHLO; nil or "" gives "localhost".
	Hostname func() string
	// Relay, read at each Send, is the smarthost; nil (or a nil Relay)
	// is direct mode without one.
	Relay func() *Relay
	// RootCAs verify the smarthost's certificate and, for MTA-STS, the
	// MX hosts'; nil means the system's roots.
	RootCAs *x509.CertPool
	// MTASTS, when not nil, gives the destinations' MTA-STS policies.
	MTASTS *mtasts.Cache

	IdleTimeout        time.Duration // an idle connection is closed after it
	MaxIdlePerHost     int           // idle connections kept per host (address and port)
	MaxMessagesPerConn int           // transactions over one connection
	ConnectTimeout     time.Duration // the TCP connection
	CommandTimeout     time.Duration // each command's reply (and the TLS handshake)
	DataTimeout        time.Duration // the reply to the final dot
	SessionTimeout     time.Duration // one connection's use for one message, from the connection (or its reuse) to the last reply

	Logger  *slog.Logger // nil discards
	Metrics Metrics      // nil records nothing
}

// Client sends messages (it implements Sender). It is safe for concurrent
// use; Close closes its idle connections.
type Client struct {
	cfg  Config
	log  *slog.Logger
	met  Metrics
	pool *pool

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var _ Sender = (*Client)(nil)

// New returns a client; it starts the goroutine that closes expired idle
// connections, stopped by Close.
func New(cfg Config) (*Client, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("smtpout: no resolver")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Port <= 0 {
		cfg.Port = DefaultPort
	}
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ConnectTimeout, DefaultConnectTimeout)
	def(&cfg.CommandTimeout, DefaultCommandTimeout)
	def(&cfg.DataTimeout, DefaultDataTimeout)
	def(&cfg.SessionTimeout, DefaultSessionTimeout)
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = DefaultMaxIdlePerHost
	}
	if cfg.MaxMessagesPerConn <= 0 {
		cfg.MaxMessagesPerConn = DefaultMaxMessagesPerConn
	}
	c := &Client{
		cfg:  cfg,
		log:  cfg.Logger,
		met:  cfg.Metrics,
		pool: newPool(cfg.MaxIdlePerHost, cfg.IdleTimeout),
		stop: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.met == nil {
		c.met = noMetrics{}
	}
	c.wg.Go(c.reap)
	return c, nil
}

// Close stops the client and closes its idle connections (with QUIT).
// Sends still running finish; their connections are closed after them.
func (c *Client) Close() error {
	c.once.Do(func() {
		close(c.stop)
		c.wg.Wait()
		c.pool.closeAll()
	})
	return nil
}

// reap closes idle connections that expired.
func (c *Client) reap() {
	t := time.NewTicker(max(c.cfg.IdleTimeout/2, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.pool.reap(time.Now())
		}
	}
}

func (c *Client) hostname() string {
	if c.cfg.Hostname != nil {
		if h := c.cfg.Hostname(); h != "" {
			return h
		}
	}
	return "localhost"
}

// Send sends m to its recipients and tells what became of each, in the
// order of m.Rcpts.
func (c *Client) Send(ctx context.Context, m *Message) []Result {
	if len(m.Rcpts) == 0 {
		return nil
	}
	var relay *Relay
	if c.cfg.Relay != nil {
		relay = c.cfg.Relay()
	}
	var res []Result
	route := "direct"
	switch {
	case relay != nil && (!relay.FallbackOnly || m.ViaRelay):
		route = "relay"
		res = c.sendRelay(ctx, m, relay)
	case m.ViaRelay:
		route = "relay"
		res = failAll(m, &failure{text: "no smarthost is configured (smtp.relay) to send mail the destination refused for the box's address", relay: true})
	default:
		res = c.sendDirect(ctx, m)
	}
	for _, r := range res {
		c.met.OutboundRecipient(route, resultClass(r))
	}
	return res
}

func resultClass(r Result) string {
	switch {
	case r.Delivered():
		return "delivered"
	case r.Blocked:
		return "blocked"
	case r.Permanent:
		return "permanent"
	}
	return "temporary"
}

// failure is why an attempt gave no answer to the transaction: DNS, a
// connection, the greeting, EHLO, TLS, MTA-STS, AUTH.
type failure struct {
	code      int
	enhanced  string
	text      string
	host      string
	permanent bool
	blocked   bool
	relay     bool
	// retryPlain: the STARTTLS handshake failed and nothing requires
	// TLS: try the same address again without it.
	retryPlain bool
	// final: do not try other hosts (the smarthost refused the login).
	final bool
}

// failAll gives every recipient of m the result f.
func failAll(m *Message, f *failure) []Result {
	out := make([]Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		out[i] = Result{Rcpt: r, Code: f.code, Enhanced: f.enhanced, Text: f.text, Host: f.host,
			Permanent: f.permanent, Blocked: f.blocked, Relay: f.relay}
	}
	return out
}

// failures gathers the failures of the hosts tried, for the text of the
// result when none answered.
type failures struct {
	last  *failure
	texts []string
}

func (fs *failures) add(f *failure) {
	fs.last = f
	if len(fs.texts) < 5 {
		fs.texts = append(fs.texts, f.text)
	}
}

func (fs *failures) result(m *Message, fallback string) []Result {
	if fs.last == nil {
		return failAll(m, &failure{text: fallback})
	}
	f := *fs.last
	f.text = strings.Join(fs.texts, "\n")
	return failAll(m, &f)
}

// sendDirect sends m to the MX hosts of its domain, in order, until one
// answers the transaction.
func (c *Client) sendDirect(ctx context.Context, m *Message) []Result {
	hosts, f := c.route(ctx, m.Domain)
	if f != nil {
		return failAll(m, f)
	}
	var policy *mtasts.Policy
	if c.cfg.MTASTS != nil {
		p, err := c.cfg.MTASTS.Lookup(ctx, m.Domain)
		if err != nil {
			c.log.Warn("MTA-STS policy lookup failed", "domain", m.Domain, "err", err, "policy", p != nil)
		}
		policy = p
	}
	var fs failures
	for _, host := range hosts {
		// A host outside the policy is refused before connecting; one
		// inside it is judged once its TLS is known (handshake).
		if policy != nil && !policy.MatchMX(host) {
			switch d := mtasts.Decide(policy, host, false); d.Action {
			case mtasts.Refuse:
				fs.add(c.mtastsRefusal(&target{host: host, domain: m.Domain}, d))
				continue
			case mtasts.DeliverAndLog:
				c.log.Warn("MTA-STS policy in mode testing violated", "id", m.ID, "domain", m.Domain, "host", host, "reason", d.Reason)
			}
		}
		addrs, err := c.addrs(ctx, host)
		if err != nil {
			fs.add(&failure{text: fmt.Sprintf("MX host %s: %v", host, err), host: host})
			continue
		}
		for _, a := range addrs {
			if ctx.Err() != nil {
				fs.add(&failure{text: fmt.Sprintf("sending to %s: %v", m.Domain, ctx.Err())})
				return fs.result(m, "")
			}
			t := &target{host: host, addr: netip.AddrPortFrom(a, uint16(c.cfg.Port)), domain: m.Domain, policy: policy}
			res, f := c.attempt(ctx, m, t)
			if f == nil {
				return res
			}
			fs.add(f)
			if f.final {
				return fs.result(m, "")
			}
		}
	}
	return fs.result(m, "no MX host of "+m.Domain+" could be tried")
}

// route returns the hosts to try for domain: its MX hosts in RFC 5321
// §5.1 order (preference ascending, equal preferences shuffled), or the
// domain itself (the implicit MX).
func (c *Client) route(ctx context.Context, domain string) ([]string, *failure) {
	mxs, err := c.cfg.Resolver.LookupMXRecords(ctx, domain)
	switch {
	case mailauth.IsNXDomain(err):
		return nil, &failure{enhanced: "5.1.2", text: "domain " + domain + " does not exist (DNS NXDOMAIN)", permanent: true}
	case errors.Is(err, mailauth.ErrNotFound):
		return []string{domain}, nil // no MX: the implicit MX
	case err != nil:
		return nil, &failure{enhanced: "4.4.3", text: fmt.Sprintf("MX lookup of %s failed: %v", domain, err)}
	}
	hosts := make([]string, 0, len(mxs))
	for i := 0; i < len(mxs); {
		j := i
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		group := mxs[i:j]
		rand.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
		for _, mx := range group {
			if mx.Host != "" { // "." among other MX records is no MX
				hosts = append(hosts, strings.ToLower(mx.Host))
			}
		}
		i = j
	}
	if len(hosts) == 0 {
		return nil, &failure{enhanced: "5.1.10", text: "domain " + domain + " accepts no mail (null MX, RFC 7505)", permanent: true}
	}
	return hosts, nil
}

// addrs returns the addresses of host, IPv4 first.
func (c *Client) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	return c.cfg.Resolver.LookupAddrs(ctx, host)
}

// sendRelay sends m through the smarthost.
func (c *Client) sendRelay(ctx context.Context, m *Message, r *Relay) []Result {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(r.Host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		as, err := c.addrs(ctx, r.Host)
		if err != nil {
			return failAll(m, &failure{text: fmt.Sprintf("smarthost %s: %v", r.addr(), err), host: r.Host, relay: true})
		}
		addrs = as
	}
	var fs failures
	for _, a := range addrs {
		t := &target{host: r.Host, addr: netip.AddrPortFrom(a, uint16(r.Port)), domain: m.Domain, relay: r}
		res, f := c.attempt(ctx, m, t)
		if f == nil {
			return res
		}
		f.relay = true
		fs.add(f)
		if f.final || ctx.Err() != nil {
			break
		}
	}
	return fs.result(m, "")
}

// attempt sends m over a connection to t: an idle one when there is one,
// else a new one. A failure says why no transaction took place.
func (c *Client) attempt(ctx context.Context, m *Message, t *target) ([]Result, *failure) {
	key := t.key()
	for {
		sc := c.pool.get(key)
		if sc == nil {
			break
		}
		sc.begin(ctx, c.cfg.SessionTimeout)
		if t.policy != nil && mtasts.Decide(t.policy, t.host, sc.verified).Action == mtasts.Refuse || !sc.reset() {
			sc.end()
			sc.close()
			continue
		}
		c.met.OutboundConnection(true, sc.tls)
		return c.transact(ctx, m, sc)
	}
	sc, f := c.open(ctx, t, true)
	if f != nil && f.retryPlain {
		c.log.Info("STARTTLS failed, trying without TLS", "id", m.ID, "host", t.host, "addr", t.addr.String(), "err", f.text)
		sc, f = c.open(ctx, t, false)
	}
	if f != nil {
		f.host = t.host
		return nil, f
	}
	c.met.OutboundConnection(false, sc.tls)
	return c.transact(ctx, m, sc)
}

// transact runs the transaction of m over sc and gives sc back to the
// pool when it can serve again.
func (c *Client) transact(ctx context.Context, m *Message, sc *session) ([]Result, *failure) {
	res, f := sc.send(m)
	sc.end()
	if f != nil {
		sc.close()
		f.host = sc.t.host
		return nil, f
	}
	c.log.Info("delivery attempt", "id", m.ID, "domain", m.Domain, "host", sc.t.host, "addr", sc.t.addr.String(),
		"relay", sc.t.relay != nil, "tls", sc.tls, "verified", sc.verified, "rcpts", len(m.Rcpts), "answer", firstLine(res))
	if sc.broken || sc.messages >= c.cfg.MaxMessagesPerConn || ctx.Err() != nil {
		sc.close()
	} else {
		c.pool.put(sc)
	}
	return res, nil
}

func firstLine(res []Result) string {
	if len(res) == 0 {
		return ""
	}
	s, _, _ := strings.Cut(res[0].Text, "\n")
	return s
}
