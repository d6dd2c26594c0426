// Package dhcpclient is the box's DHCP client on its WAN port (router
// mode, network.wan.method dhcp). It implements the client side of RFC
// 2131 with github.com/insomniacslk/dhcp's nclient4, over a raw socket
// (the port has no address before the first lease): DISCOVER, OFFER,
// REQUEST, ACK; then the lease is kept: renewed with its server at T1
// (unicast), rebound with any server at T2 (broadcast), lost on a NAK or
// at its expiry and discovered again; it is released when the client
// stops (RFC 2131 4.4.5 and 4.4.6).
//
// It configures nothing on the host: it hands the lease on as a
// wanlink.State (the address with its mask, the first router, the DNS
// servers, the lease's expiry; without a lease, the last failure and the
// next try, for the status), which its caller, the network reconciler, applies with
// netlink and publishes as the box's public address and upstream
// resolvers. Run keeps the lease until its context is done; State and
// Changed tell the caller what it holds.
package dhcpclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// Timings of the client. An exchange is one message and its answer,
// retried by nclient4 a few times on silence.
const (
	exchangeTimeout = 2 * time.Second
	exchangeRetries = 3
	// minRetry is RFC 2131 4.4.5's least wait between two attempts to
	// renew or rebind.
	minRetry = time.Minute
	// Backoff between failed discoveries: a server that is down, a port
	// not up yet.
	minBackoff = time.Second
	maxBackoff = 16 * time.Second
	// defaultLease is the lease time assumed of an ACK that gives none.
	defaultLease = time.Hour
	// minLease is the shortest lease taken as given, and minRenew the
	// shortest wait before renewing: a server that hands out leases of
	// 0 s would otherwise have the client, and every reconciler that
	// follows the WAN's address, run without a pause.
	minLease = time.Minute
	minRenew = minLease / 2
	// maxDNS is how many of an ACK's DNS servers are kept.
	maxDNS = 3
)

// Metrics records what the client does; runtime/metrics implements it.
type Metrics interface {
	// DHCPClientLease records whether the client holds a lease.
	DHCPClientLease(up bool)
	// DHCPClientExchange records an exchange with a server: kind "discover",
	// "renew" or "rebind"; result "ok", "nak" or "failed" (no answer, or
	// the socket failed).
	DHCPClientExchange(kind, result string)
}

type noMetrics struct{}

func (noMetrics) DHCPClientLease(bool)              {}
func (noMetrics) DHCPClientExchange(string, string) {}

// Config is what a Client needs.
type Config struct {
	// Interface is the port the client runs on (the WAN port).
	Interface string
	Logger    *slog.Logger
	Metrics   Metrics
}

// exchanger is the protocol's side of the client: nclient4 on a raw
// socket, or a test's fake.
type exchanger interface {
	// discover runs DISCOVER, OFFER, REQUEST, ACK.
	discover(ctx context.Context) (*nclient4.Lease, error)
	// renew asks the lease's server (unicast), or with rebind any server
	// (broadcast), to extend it; a NAK is an *nclient4.ErrNak.
	renew(ctx context.Context, lease *nclient4.Lease, rebind bool) (*nclient4.Lease, error)
	release(lease *nclient4.Lease) error
	close() error
}

// Client is a DHCP client of one interface.
type Client struct {
	cfg Config
	log *slog.Logger
	met Metrics

	// The clock and the socket, replaced by the tests of the lease's
	// timers.
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	dial  func(iface string) (exchanger, error)

	mu      sync.Mutex
	state   wanlink.State
	changed chan struct{} // closed, and replaced, when state moves
}

// New returns the client of cfg.Interface; Run starts it.
func New(cfg Config) *Client {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	met := cfg.Metrics
	if met == nil {
		met = noMetrics{}
	}
	return &Client{
		cfg:     cfg,
		log:     log.With("dhcp_client", cfg.Interface),
		met:     met,
		now:     time.Now,
		after:   time.After,
		dial:    dialRaw,
		state:   wanlink.State{Interface: cfg.Interface},
		changed: make(chan struct{}),
	}
}

// State is the lease the client holds; Up is false when it holds none.
func (c *Client) State() wanlink.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.DNS = slices.Clone(s.DNS)
	return s
}

// Changed is closed when the state moves; call it again for the next
// move.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// set replaces the state, and wakes the waiters of Changed when it moved
// (Since, Detail and Until aside: a renewal, a failed retry only update
// what the status shows).
func (c *Client) set(s wanlink.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.state
	if sameApplied(old, s) {
		c.state.Detail, c.state.Until = s.Detail, s.Until
		return
	}
	s.Since = c.now()
	c.state = s
	close(c.changed)
	c.changed = make(chan struct{})
	c.met.DHCPClientLease(s.Up)
}

func sameApplied(a, b wanlink.State) bool {
	a, b = a.Applied(), b.Applied()
	return a.Up == b.Up && a.Address == b.Address && a.Gateway == b.Gateway && slices.Equal(a.DNS, b.DNS) && a.Interface == b.Interface
}

// down sets the state down, with why (for the status) and when the
// client tries again (zero: at once).
func (c *Client) down(detail string, retry time.Time) {
	c.set(wanlink.State{Interface: c.cfg.Interface, Detail: detail, Until: retry})
}

// errLost ends a session whose lease was lost: discover again at once.
var errLost = errors.New("lease lost")

// Run gets a lease and keeps it until ctx is done, then releases it. It
// returns nil when ctx is done; failures (no server, no interface) are
// retried with backoff, so it does not return before.
func (c *Client) Run(ctx context.Context) error {
	defer c.set(wanlink.State{Interface: c.cfg.Interface})
	backoff := minBackoff
	for ctx.Err() == nil {
		err := c.session(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errLost):
			backoff = minBackoff
			continue
		case err != nil:
			c.log.Debug("no lease", "err", err, "retry_in", backoff)
			c.down(err.Error(), c.now().Add(backoff))
		}
		if !c.sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// session opens the socket, gets a lease and keeps it (hold).
func (c *Client) session(ctx context.Context) error {
	ex, err := c.dial(c.cfg.Interface)
	if err != nil {
		return fmt.Errorf("open the dhcp socket of %s: %w", c.cfg.Interface, err)
	}
	defer ex.close()
	dctx, cancel := context.WithTimeout(ctx, exchangeTimeout*(exchangeRetries+1))
	lease, err := ex.discover(dctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		c.met.DHCPClientExchange("discover", result(err))
		if errors.Is(err, nclient4.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded) {
			// What the status shows: the cause, without nclient4's layers.
			c.log.Debug("discover", "err", err)
			return fmt.Errorf("no DHCP server answered on %s", c.cfg.Interface)
		}
		return fmt.Errorf("discover on %s: %w", c.cfg.Interface, err)
	}
	c.met.DHCPClientExchange("discover", "ok")
	if !StateOf(lease.ACK).Up {
		return fmt.Errorf("the DHCP server on %s offered no usable address (%s)", c.cfg.Interface, lease.ACK.YourIPAddr)
	}
	return c.hold(ctx, ex, lease)
}

func result(err error) string {
	var nak *nclient4.ErrNak
	if errors.As(err, &nak) {
		return "nak"
	}
	return "failed"
}

// hold keeps lease: renewed from T1, rebound from T2, lost at its expiry
// or on a NAK (errLost). When ctx is done it releases the lease and
// returns nil.
func (c *Client) hold(ctx context.Context, ex exchanger, lease *nclient4.Lease) error {
	got := c.now()
	c.bound(lease, got)
	stop := func() error {
		if err := ex.release(lease); err != nil {
			c.log.Warn("release the lease", "err", err)
		} else {
			c.log.Info("lease released", "address", c.State().Address)
		}
		return nil
	}
	for {
		t1, t2, exp := Times(lease.ACK, got)
		if !c.sleep(ctx, t1.Sub(c.now())) {
			return stop()
		}
		renewed := false
		for now := c.now(); now.Before(exp) && !renewed; now = c.now() {
			rebind := !now.Before(t2)
			kind := "renew"
			if rebind {
				kind = "rebind"
			}
			ectx, cancel := context.WithTimeout(ctx, exchangeTimeout*(exchangeRetries+1))
			nl, err := ex.renew(ectx, lease, rebind)
			cancel()
			if ctx.Err() != nil {
				return stop()
			}
			if err == nil {
				c.met.DHCPClientExchange(kind, "ok")
				if !StateOf(nl.ACK).Up {
					c.down(fmt.Sprintf("the server's %s gave no usable address (%s)", kind, nl.ACK.YourIPAddr), time.Time{})
					return errLost
				}
				lease, got, renewed = nl, c.now(), true
				c.bound(lease, got)
				break
			}
			c.met.DHCPClientExchange(kind, result(err))
			if result(err) == "nak" {
				c.log.Warn("lease refused by the server", "kind", kind, "err", err)
				c.down(fmt.Sprintf("the server refused to %s the lease of %s", kind, c.State().Address.Addr()), time.Time{})
				return errLost
			}
			c.log.Info("no answer to "+kind, "err", err)
			if !c.sleep(ctx, retryWait(c.now(), t2, exp)) {
				return stop()
			}
		}
		if !renewed {
			c.log.Warn("lease expired", "address", c.State().Address)
			c.down(fmt.Sprintf("the lease of %s expired, no server renewed it", c.State().Address.Addr()), time.Time{})
			return errLost
		}
	}
}

// retryWait is how long to wait before the next attempt to renew (before
// t2) or rebind (before exp): half the time left until then, at least
// minRetry, but never past it (RFC 2131 4.4.5).
func retryWait(now, t2, exp time.Time) time.Duration {
	until := t2
	if !now.Before(t2) {
		until = exp
	}
	left := until.Sub(now)
	return min(max(left/2, minRetry), left)
}

// Times are the lease's T1, T2 and expiry from got, when its ACK came:
// its options, or RFC 2131's defaults (half the lease, seven eighths);
// never a lease under minLease nor a renewal under minRenew.
func Times(ack *dhcpv4.DHCPv4, got time.Time) (t1, t2, exp time.Time) {
	lease := max(ack.IPAddressLeaseTime(defaultLease), minLease)
	r1 := max(ack.IPAddressRenewalTime(lease/2), minRenew)
	r2 := max(ack.IPAddressRebindingTime(lease*7/8), minRenew)
	r2 = min(r2, lease)
	r1 = min(r1, r2)
	return got.Add(r1), got.Add(r2), got.Add(lease)
}

// bound publishes lease as the state.
func (c *Client) bound(lease *nclient4.Lease, got time.Time) {
	s := StateOf(lease.ACK)
	s.Interface = c.cfg.Interface
	_, _, exp := Times(lease.ACK, got)
	s.Until = exp
	if old := c.State(); !old.Up || old.Address != s.Address {
		c.log.Info("lease", "address", s.Address, "router", s.Gateway, "dns", s.DNS, "expires", exp.Format(time.RFC3339))
	}
	c.set(s)
}

// StateOf is the link state an ACK gives: the address with its mask (the
// address's class when the ACK has none or one that is not contiguous),
// the first router, the first maxDNS DNS servers. What is not a unicast
// address of a host (0.0.0.0, loopback, link-local, multicast,
// broadcast) is left out; without a usable address the state is down.
func StateOf(ack *dhcpv4.DHCPv4) wanlink.State {
	a, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !hostAddr(a) {
		return wanlink.State{}
	}
	s := wanlink.State{Up: true}
	bits, total := ack.SubnetMask().Size()
	if total == 0 || bits == 0 {
		bits, _ = ack.YourIPAddr.DefaultMask().Size()
	}
	s.Address = netip.PrefixFrom(a, bits)
	if rs := ack.Router(); len(rs) > 0 {
		if g, _ := netip.AddrFromSlice(rs[0].To4()); hostAddr(g) {
			s.Gateway = g
		}
	}
	for _, d := range ack.DNS() {
		if x, _ := netip.AddrFromSlice(d.To4()); hostAddr(x) && len(s.DNS) < maxDNS {
			s.DNS = append(s.DNS, x)
		}
	}
	return s
}

// hostAddr reports whether a is a unicast address a host can have.
func hostAddr(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// sleep waits d, or until ctx is done (false).
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-c.after(d):
		return true
	}
}

// raw is nclient4 on a raw socket of the interface, for what is
// broadcast (discovery, rebinding). What is unicast to the server
// (renewing, releasing) goes through a UDP socket of the interface's
// port 68: the kernel then sends from the leased address (it drops, as a
// martian, a packet from 0.0.0.0 to a unicast address), and the socket
// gets the server's answer whether unicast to that address or broadcast
// (a NAK is).
type raw struct {
	iface string
	c     *nclient4.Client
}

func dialRaw(iface string) (exchanger, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(exchangeTimeout), nclient4.WithRetry(exchangeRetries))
	if err != nil {
		return nil, err
	}
	return raw{iface, c}, nil
}

// unicast is a client on a UDP socket bound to port 68 of the interface;
// the caller closes it.
func (r raw) unicast(ctx context.Context) (*nclient4.Client, error) {
	ifc, err := net.InterfaceByName(r.iface)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			}
			if serr == nil {
				serr = unix.BindToDevice(int(fd), r.iface)
			}
		})
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", nclient4.ClientPort))
	if err != nil {
		return nil, fmt.Errorf("a udp socket on %s: %w", r.iface, err)
	}
	c, err := nclient4.NewWithConn(conn, ifc.HardwareAddr, nclient4.WithTimeout(exchangeTimeout), nclient4.WithRetry(exchangeRetries))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (r raw) discover(ctx context.Context) (*nclient4.Lease, error) { return r.c.Request(ctx) }

func (r raw) renew(ctx context.Context, lease *nclient4.Lease, rebind bool) (*nclient4.Lease, error) {
	req, err := dhcpv4.NewRenewFromAck(lease.ACK, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("make a request: %w", err)
	}
	c := r.c
	dest := &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}
	match := nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if !rebind {
		// Renewing: to the server that gave the lease, and only its answer.
		if c, err = r.unicast(ctx); err != nil {
			return nil, err
		}
		defer c.Close()
		server := lease.ACK.ServerIdentifier()
		dest = &net.UDPAddr{IP: server, Port: nclient4.ServerPort}
		match = nclient4.IsAll(nclient4.IsCorrectServer(server), match)
	}
	resp, err := c.SendAndRead(ctx, dest, req, match)
	if err != nil {
		return nil, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &nclient4.ErrNak{Offer: lease.Offer, Nak: resp}
	}
	return &nclient4.Lease{Offer: lease.Offer, ACK: resp, CreationTime: time.Now()}, nil
}

// release tells the server, unicast from the leased address, that the
// lease is no longer used (RFC 2131 4.4.6).
func (r raw) release(lease *nclient4.Lease) error {
	c, err := r.unicast(context.Background())
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Release(lease)
}

func (r raw) close() error { return r.c.Close() }
