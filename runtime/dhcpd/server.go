package dhcpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// Ports of DHCP (RFC 2131 4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

// Metrics hears what the server does, for the daemon's metrics;
// *metrics.Metrics is one. The calls come from the server's goroutines:
// they must be quick and safe for concurrent use.
type Metrics interface {
	// DHCPReply: the server sent a reply of that kind (Offer, Ack, Nak),
	// or answered none: Released, Declined (a lease given back or found
	// in use), Exhausted (no address left to offer), Dropped (malformed,
	// not for this server, over a limit).
	DHCPReply(kind string)
	// DHCPLeases: the leases active and the dynamic addresses free.
	DHCPLeases(active, free int)
}

// Kinds of DHCPReply.
const (
	Offer     = "offer"
	Ack       = "ack"
	Nak       = "nak"
	Released  = "released"
	Declined  = "declined"
	Exhausted = "exhausted"
	Dropped   = "dropped"
)

type noMetrics struct{}

func (noMetrics) DHCPReply(string)    {}
func (noMetrics) DHCPLeases(int, int) {}

// LeaseFile is the name of the leases' file in the server's directory.
const LeaseFile = "leases.json"

// Options are how a Server runs.
type Options struct {
	// Config is what the DHCP reconciler publishes; nothing is answered
	// before the first Config, nor while it is not Enabled.
	Config *Live
	// Dir keeps the leases (LeaseFile), so that they hold across
	// restarts.
	Dir     string
	Logger  *slog.Logger
	Metrics Metrics
	// Now is the clock; time.Now when nil (tests move it).
	Now func() time.Time
}

// Server is the DHCP server. Its methods are safe for concurrent use: a
// new socket may serve while the old one stops.
type Server struct {
	o   Options
	log *slog.Logger
	m   Metrics

	mu      sync.Mutex
	pool    *pool
	cfg     *Config // the Config the pool follows
	limit   *limiter
	saveErr error // the last failure to save the leases, logged once
}

// New returns a server with the leases kept in o.Dir.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Config == nil {
		o.Config = &Live{}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("dhcp leases' directory: %w", err)
	}
	s := &Server{o: o, log: o.Logger, m: o.Metrics, pool: newPool(), limit: newLimiter()}
	ls, err := readLeases(filepath.Join(o.Dir, LeaseFile))
	if err != nil {
		return nil, err
	}
	s.pool.load(ls, o.Now())
	return s, nil
}

// readLeases reads the leases' file; none when it does not exist.
func readLeases(path string) ([]Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dhcp leases: %w", err)
	}
	var ls []Lease
	if err := json.Unmarshal(data, &ls); err != nil {
		return nil, fmt.Errorf("read dhcp leases %s: %w", path, err)
	}
	return ls, nil
}

// save writes the leases whole, atomically, before the reply that
// grants one is sent: a restart never forgets a lease a client holds.
// Called with s.mu held.
func (s *Server) save() error {
	data, err := json.MarshalIndent(s.pool.leases(), "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.o.Dir, LeaseFile)
	// The devices' MACs and names: the box's business only.
	if err := safeio.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return safeio.SyncDir(s.o.Dir)
}

// Leases lists the leases known, active or not, by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool.leases()
}

// current returns the Config to serve, the pool following it; nil when
// nothing is to be answered. Called with s.mu held.
func (s *Server) current(now time.Time) *Config {
	cfg, _ := s.o.Config.Load()
	if cfg == nil || !cfg.Enabled || cfg.Check() != nil {
		return nil
	}
	if cfg != s.cfg {
		s.pool.setConfig(cfg, now)
		s.cfg = cfg
	}
	return cfg
}

// Run follows the published Config and keeps the gauges of the leases
// until ctx is done: a daemon component.
func (s *Server) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		_, changed := s.o.Config.Load()
		s.mu.Lock()
		now := s.o.Now()
		if cfg := s.current(now); cfg != nil {
			s.m.DHCPLeases(s.pool.counts(now))
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// maxPacket bounds a request read; a DHCP message is at least 300 bytes
// and rarely above 576.
const maxPacket = 1500

// ServePacket answers the requests read from pc, a UDP socket on port 67
// bound to the LAN's interface with broadcasts allowed, until ctx is
// done; it closes pc then. Requests are handled one at a time: a flood
// costs no memory, only the requests dropped.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, maxPacket)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcp read: %w", err)
		}
		resp, to := s.handle(buf[:n])
		if resp == nil {
			continue
		}
		if _, err := pc.WriteTo(resp.ToBytes(), to); err != nil {
			s.log.Warn("dhcp reply not sent", "to", to, "client", resp.ClientHWAddr, "err", err)
		}
	}
}

// handle answers one request: the reply and where to send it, or nil.
func (s *Server) handle(pkt []byte) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil || !wellFormed(req) {
		s.m.DHCPReply(Dropped)
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	cfg := s.current(now)
	if cfg == nil {
		return nil, nil
	}
	mac := req.ClientHWAddr.String()
	if !s.limit.allow(mac, now) {
		s.m.DHCPReply(Dropped)
		return nil, nil
	}
	resp, to, kind := s.answer(cfg, req, mac, now)
	if resp == nil && kind == "" {
		kind = Dropped
	}
	s.m.DHCPReply(kind)
	s.m.DHCPLeases(s.pool.counts(now))
	return resp, to
}

// wellFormed says whether req is a request the server may answer: a
// BOOTREQUEST of an Ethernet device, with a message type, sent on the
// LAN itself (a relayed request, giaddr set, is not for this server).
func wellFormed(req *dhcpv4.DHCPv4) bool {
	return req.OpCode == dhcpv4.OpcodeBootRequest && req.HWType == iana.HWTypeEthernet &&
		len(req.ClientHWAddr) == 6 && req.ClientHWAddr[0]&1 == 0 &&
		req.MessageType() != dhcpv4.MessageTypeNone && (req.GatewayIPAddr == nil || req.GatewayIPAddr.IsUnspecified())
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

var broadcastTo = &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}

// answer is the server's side of RFC 2131 4.3 for one request: the reply,
// where to send it, and its kind for the metrics ("" for Dropped).
func (s *Server) answer(cfg *Config, req *dhcpv4.DHCPv4, mac string, now time.Time) (*dhcpv4.DHCPv4, *net.UDPAddr, string) {
	ciaddr := addrOf(req.ClientIPAddr)
	requested := addrOf(req.RequestedIPAddress())
	serverID := addrOf(req.ServerIdentifier())
	ours := cfg.Server.Addr()
	// Replies to a client without an address are broadcast: it cannot
	// answer ARP for the address offered, and an unprivileged UDP socket
	// cannot write the ARP entry a unicast would need (RFC 2131 4.1
	// allows the broadcast).
	to := broadcastTo
	if ciaddr.IsValid() {
		to = &net.UDPAddr{IP: ciaddr.AsSlice(), Port: ClientPort}
	}

	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		a, ok := s.pool.offer(mac, requested, now)
		if !ok {
			s.log.Warn("dhcp: no address left to offer", "client", mac, "range", fmt.Sprintf("%s-%s", cfg.Start, cfg.End))
			return nil, nil, Exhausted
		}
		return s.reply(cfg, req, dhcpv4.MessageTypeOffer, a, mac), to, Offer

	case dhcpv4.MessageTypeRequest:
		var a netip.Addr
		switch {
		case serverID.IsValid(): // SELECTING
			if serverID != ours {
				// The client took another server's offer: ours is free.
				s.pool.forgetOffer(mac)
				return nil, nil, ""
			}
			a = requested
		case requested.IsValid(): // INIT-REBOOT
			a = requested
		case ciaddr.IsValid(): // RENEWING, REBINDING
			a = ciaddr
		default:
			return nil, nil, ""
		}
		if !a.IsValid() {
			return nil, nil, "" // SELECTING without the address chosen: malformed
		}
		if !cfg.Server.Contains(a) {
			// An address of another network (the client moved): NAK so
			// that it starts again (RFC 2131 4.3.2).
			return s.nak(cfg, req, "address not on this network"), broadcastTo, Nak
		}
		l, ok := s.pool.bind(mac, a, hostLabel(req.HostName()), now)
		if !ok {
			s.log.Info("dhcp: request refused", "client", mac, "address", a)
			return s.nak(cfg, req, "address not available"), broadcastTo, Nak
		}
		if err := s.save(); err != nil {
			// Not granted unless it is on disk: a NAK-less silence, the
			// client asks again.
			if s.saveErr == nil || s.saveErr.Error() != err.Error() {
				s.log.Error("dhcp: leases not saved: request not acknowledged", "err", err)
			}
			s.saveErr = err
			return nil, nil, ""
		}
		s.saveErr = nil
		s.log.Info("dhcp: lease", "client", mac, "address", l.Addr, "hostname", l.Hostname, "expiry", l.Expiry.UTC().Format(time.RFC3339))
		return s.reply(cfg, req, dhcpv4.MessageTypeAck, a, mac), to, Ack

	case dhcpv4.MessageTypeDecline:
		if serverID != ours || !requested.IsValid() || !s.pool.decline(mac, requested, now) {
			return nil, nil, ""
		}
		s.log.Warn("dhcp: a client found its address in use: held back", "client", mac, "address", requested, "for", declineHold)
		s.saveOrLog()
		return nil, nil, Declined

	case dhcpv4.MessageTypeRelease:
		if serverID.IsValid() && serverID != ours || !ciaddr.IsValid() || !s.pool.release(mac, ciaddr, now) {
			return nil, nil, ""
		}
		s.log.Info("dhcp: lease released", "client", mac, "address", ciaddr)
		s.saveOrLog()
		return nil, nil, Released

	case dhcpv4.MessageTypeInform:
		if !ciaddr.IsValid() || !cfg.Server.Contains(ciaddr) {
			return nil, nil, ""
		}
		return s.reply(cfg, req, dhcpv4.MessageTypeAck, netip.Addr{}, mac), to, Ack
	}
	return nil, nil, ""
}

func (s *Server) saveOrLog() {
	if err := s.save(); err != nil {
		s.log.Error("dhcp: leases not saved", "err", err)
	}
}

// reply builds an OFFER or ACK of yiaddr (invalid: an ACK to INFORM,
// without lease), with the LAN's options.
func (s *Server) reply(cfg *Config, req *dhcpv4.DHCPv4, kind dhcpv4.MessageType, yiaddr netip.Addr, mac string) *dhcpv4.DHCPv4 {
	ours := cfg.Server.Addr().AsSlice()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(kind),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ours)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(cfg.Server.Bits(), 32))),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(broadcast(cfg.Server).AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptRouter(ours)),
		dhcpv4.WithOption(dhcpv4.OptDNS(ours)),
	}
	if yiaddr.IsValid() {
		lt := cfg.LeaseTime
		mods = append(mods,
			dhcpv4.WithYourIP(yiaddr.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lt)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lt/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lt*7/8)))
		if r, ok := s.pool.reservedMAC[mac]; ok && r.Name != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(r.Name)))
		}
	}
	if cfg.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(cfg.Domain)))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		// Only the transaction ID's generation can fail, and a reply
		// copies the request's.
		s.log.Error("dhcp: reply not built", "err", err)
		return nil
	}
	return resp
}

func (s *Server) nak(cfg *Config, req *dhcpv4.DHCPv4, why string) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(cfg.Server.Addr().AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		s.log.Error("dhcp: reply not built", "err", err)
		return nil
	}
	return resp
}

// hostLabel is a client's host name (option 12) as the leases keep it: a
// DNS label of letters, digits and '-', at most 63 bytes; anything else
// (a hostile client's 255 bytes of escapes, which the leases file and the
// log would carry at every renewal) is not kept.
func hostLabel(name string) string {
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return ""
		}
	}
	return name
}
