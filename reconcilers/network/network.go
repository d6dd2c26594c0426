// Package network is the network reconciler: it owns network.mode,
// network.wan, network.lan.address and network.public_address, converges
// the box's ports with netlink, runs its WAN link (runtime/dhcpclient,
// runtime/pppoe), and publishes the facts that the DNS reconciler reads
// (the box's public address, its LAN address, the upstream resolvers).
//
// With box hardware (Config.Ports) it works in the current network
// namespace, the box's: in router mode the WAN port alone and the LAN
// ports in the bridge br-lan with the LAN address /24 (manual 6.2.1.2),
// IPv4 forwarding on; in server mode every port in br-lan, a switch with
// the static address (manual 6.2.2.1), forwarding off; the WAN's static
// address and default route, or the DHCP lease's. It records in the store
// what it created and removes nothing else. Without box hardware it
// configures nothing, reports its netlink part skipped, and reads the
// host (runtime/hostnet): the source address of the default route, the
// resolvers of /etc/resolv.conf.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/dhcpclient"
	"mailfountain.dev/mailfountain/runtime/hostnet"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "network"

// MetaApplied is the store meta key of the applied settings (JSON).
const MetaApplied = "network_settings"

// linkSwitchWait bounds how long Apply waits for the watch loop to switch
// WAN links (a DHCP release, pppd's exit).
const linkSwitchWait = 15 * time.Second

// PollInterval is how often Watch looks at the host's route address and
// resolvers: a dynamic address that moves reaches the DNS zones within
// seconds.
const PollInterval = 3 * time.Second

// Settings are what the reconciler derives from the document and keeps:
// what its facts are made of, besides what it observes of the host.
type Settings struct {
	// PublicAddress is network.public_address; invalid when the document
	// names none (the host's route address is the fact then).
	PublicAddress netip.Addr `json:"public_address,omitzero"`
	// Upstreams are the static WAN's resolvers (network.wan.dns); none
	// for another WAN, whose resolvers the host's configuration has.
	Upstreams []netip.Addr `json:"upstreams,omitempty"`
	// LAN is the router's LAN address with its /24 (manual 6.2.1.2);
	// invalid in server mode, which has no LAN of its own.
	LAN netip.Prefix `json:"lan,omitzero"`
}

// Desired derives the settings from the document. The schema checked
// the addresses; one that does not parse (a State not from the loader)
// is left out.
func Desired(st *schema.State) Settings {
	var s Settings
	if a, err := netip.ParseAddr(st.Network.PublicAddress); err == nil {
		s.PublicAddress = a.Unmap()
	}
	if st.Network.WAN.Method == "static" {
		for _, d := range st.Network.WAN.DNS {
			if a, err := netip.ParseAddr(d); err == nil {
				s.Upstreams = append(s.Upstreams, a.Unmap())
			}
		}
	}
	if st.Network.Mode != "server" {
		if a, err := netip.ParseAddr(st.Network.LAN.Address); err == nil && a.Is4() {
			s.LAN = netip.PrefixFrom(a, 24)
		}
	}
	return s
}

// Host is what the reconciler reads of the host.
type Host struct {
	// RouteAddress is hostnet.RouteAddress.
	RouteAddress func(ctx context.Context) (netip.Addr, error)
	// Resolvers is hostnet.Resolvers of hostnet.ResolvConf.
	Resolvers func() ([]netip.Addr, error)
}

// SystemHost reads the host this runs on.
func SystemHost() Host {
	return Host{
		RouteAddress: hostnet.RouteAddress,
		Resolvers:    func() ([]netip.Addr, error) { return hostnet.Resolvers(hostnet.ResolvConf) },
	}
}

// Metrics records the netlink changes; runtime/metrics implements it.
type Metrics interface {
	// NetlinkChanges records changes made to the box's links, addresses,
	// routes and forwarding.
	NetlinkChanges(n int)
	// NetlinkDriftCorrected records those of them that put back what the
	// layout last applied had (a port set down, an address deleted by
	// hand).
	NetlinkDriftCorrected(n int)
}

type noMetrics struct{}

func (noMetrics) NetlinkChanges(int)        {}
func (noMetrics) NetlinkDriftCorrected(int) {}

// Config is the reconciler's hardware and WAN links.
type Config struct {
	// Ports are the box's ports; nil without box hardware: nothing on the
	// host is touched.
	Ports *Ports
	// NewDHCP makes the DHCP client of a port; nil: runtime/dhcpclient's.
	NewDHCP func(iface string) WANLink
	// NewPPPoE makes the PPPoE link of a port with the document's WAN
	// (user name, password); nil: a PPPoE WAN fails to start (logged).
	NewPPPoE func(iface string, wan schema.WAN) (WANLink, error)
	Metrics  Metrics
}

// Reconciler keeps the settings in the store, converges the box's links
// and publishes the facts.
type Reconciler struct {
	st    *store.Store
	host  Host
	log   *slog.Logger
	ports *Ports
	met   Metrics
	links *links
	shown shown

	// changes counts the netlink changes applied, for the tests of
	// idempotence.
	changes atomic.Int64
}

// New returns the reconciler of the settings kept in st, reading host,
// on the hardware of cfg.
func New(st *store.Store, host Host, cfg Config, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("reconciler", Name)
	r := &Reconciler{st: st, host: host, log: log, ports: cfg.Ports, met: cfg.Metrics}
	if r.met == nil {
		r.met = noMetrics{}
	}
	newDHCP := cfg.NewDHCP
	if newDHCP == nil {
		// The daemon's metrics record the client's leases too.
		dm, _ := cfg.Metrics.(dhcpclient.Metrics)
		newDHCP = func(iface string) WANLink {
			return dhcpclient.New(dhcpclient.Config{Interface: iface, Logger: logger, Metrics: dm})
		}
	}
	r.links = &links{log: log, wake: make(chan struct{}, 1), make: func(spec linkSpec, wan schema.WAN) (WANLink, error) {
		switch spec.Method {
		case "dhcp":
			return newDHCP(spec.Interface), nil
		case "pppoe":
			if cfg.NewPPPoE == nil {
				return nil, errors.New("this build has no pppoe link")
			}
			return cfg.NewPPPoE(spec.Interface, wan)
		}
		return nil, fmt.Errorf("no wan link of method %q", spec.Method)
	}}
	return r
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler.
func (r *Reconciler) Owns() []string {
	return []string{"network.mode", "network.wan", "network.lan.address", "network.public_address"}
}

// SkipReason implements reconcilers.Skipper: without box hardware the
// netlink part is skipped (the facts are still published, the settings
// still kept).
func (r *Reconciler) SkipReason() string {
	if r.ports == nil {
		return reconcilers.ReasonNoHardware
	}
	return ""
}

// SkippedFields implements reconcilers.PartSkipper: without box hardware
// network.public_address is still applied (the facts of the DNS zones).
func (r *Reconciler) SkippedFields() []string {
	return []string{"network.mode", "network.wan", "network.lan.address"}
}

// Changes is the number of netlink changes this reconciler applied.
func (r *Reconciler) Changes() int64 { return r.changes.Load() }

// Publishes implements reconcilers.FactPublisher.
func (r *Reconciler) Publishes() []reconcilers.FactKey {
	return []reconcilers.FactKey{facts.PublicAddress, facts.UpstreamResolvers, facts.LANAddress}
}

type live struct {
	applied Settings
	// route is the host's route address, invalid when it has none;
	// resolvers those of its resolver configuration.
	route     netip.Addr
	resolvers []netip.Addr
	// net is the box's links, with box hardware.
	net *netState
}

func (l *live) Fingerprint() string {
	b, _ := json.Marshal(l.applied) // plain data: cannot fail
	n, _ := json.Marshal(l.net)
	return fmt.Sprintf("%s route=%s resolvers=%v net=%s", b, l.route, l.resolvers, n)
}

// Load reads the applied settings from st; none before any apply.
func Load(ctx context.Context, st *store.Store) (Settings, error) {
	var s Settings
	if _, err := st.MetaJSON(ctx, MetaApplied, &s); err != nil {
		return Settings{}, fmt.Errorf("read network settings: %w", err)
	}
	return s, nil
}

// Observe reads the applied settings and the host: a host without a
// default route has no route address (not an error: the document may
// name the public address), an unreadable resolver configuration is one.
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	s, err := Load(ctx, r.st)
	if err != nil {
		return nil, err
	}
	l := &live{applied: s}
	if l.route, err = r.host.RouteAddress(ctx); err != nil {
		r.log.Debug("no route address", "err", err)
	}
	if l.resolvers, err = r.host.Resolvers(); err != nil {
		return nil, fmt.Errorf("observe network: %w", err)
	}
	if r.ports != nil {
		n, err := observeNet(r.ports)
		if err != nil {
			return nil, fmt.Errorf("observe network: %w", err)
		}
		if n.Owned, err = loadOwned(ctx, r.st); err != nil {
			return nil, err
		}
		n.Running, n.LinkUp, n.Watching = r.links.running()
		// What only the status shows (a lease's expiry, pppd's last exit)
		// is no drift, and moves no fingerprint.
		n.LinkUp = n.LinkUp.Applied()
		l.net = &n
		r.shown.setLayout(n.Owned.Layout)
		r.shown.setUpstreams(s.Upstreams)
	}
	return l, nil
}

// Plan returns one change when the settings differ from the applied ones.
func (r *Reconciler) Plan(_ context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the network reconciler observed", observed)
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	want := Desired(desired)
	var changes []reconcilers.Change
	if d := describe(l.applied, want); d != "" {
		changes = append(changes, reconcilers.Change{Op: reconcilers.Update, Resource: "network settings", Detail: d, Payload: want})
	}
	if l.net == nil {
		return changes, nil
	}
	lay := desiredLayout(desired, r.ports, l.net.Running, l.net.LinkUp)
	ops := planNet(*l.net, lay, r.ports)
	rec := recordOf(*l.net, lay, ops)
	for _, o := range ops {
		op, res, detail := o.change()
		changes = append(changes, reconcilers.Change{Op: reconcilers.Op(op), Resource: res, Detail: detail, Payload: netChange{op: o, rec: rec}})
	}
	return changes, nil
}

func describe(old, s Settings) string {
	var d []string
	show := func(v any, none string) string {
		if str := fmt.Sprint(v); str != "invalid IP" && str != "invalid Prefix" && str != "[]" {
			return str
		}
		return none
	}
	add := func(what string, o, n any, none string) {
		if o, n := show(o, none), show(n, none); o != n {
			d = append(d, fmt.Sprintf("%s %s → %s", what, o, n))
		}
	}
	add("public address", old.PublicAddress, s.PublicAddress, "the default route's")
	add("upstream resolvers", old.Upstreams, s.Upstreams, "the host's")
	add("lan address", old.LAN, s.LAN, "none")
	return strings.Join(d, ", ")
}

// Apply stores the settings and carries out the netlink changes, in
// their order: what they will create is recorded first (MetaOwned), so
// that an apply cut short leaves nothing the reconciler does not know it
// made; what they removed is forgotten once they all succeeded.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	var rec *record
	for _, c := range changes {
		if nc, ok := c.Payload.(netChange); ok && rec == nil {
			rec = nc.rec
			if err := saveOwned(ctx, r.st, rec.before); err != nil {
				return err
			}
		}
	}
	applied := 0
	defer func() {
		if applied > 0 {
			r.changes.Add(int64(applied))
			r.met.NetlinkChanges(applied)
			if rec != nil && rec.drift {
				r.met.NetlinkDriftCorrected(applied)
			}
		}
	}()
	for _, c := range changes {
		switch p := c.Payload.(type) {
		case Settings:
			b, _ := json.Marshal(p) // plain data: cannot fail
			if err := r.st.SetMeta(ctx, MetaApplied, string(b)); err != nil {
				return fmt.Errorf("apply network settings: %w", err)
			}
			r.shown.setUpstreams(p.Upstreams)
			r.log.Info("network settings applied", "public_address", p.PublicAddress, "upstreams", p.Upstreams, "lan", p.LAN)
		case netChange:
			if p.op.kind == opLink {
				var l WANLink
				if p.op.spec.Method != "" {
					var err error
					if l, err = r.links.make(p.op.spec, p.op.wan); err != nil {
						return fmt.Errorf("apply %s: %w", c.Resource, err)
					}
				}
				// The running link stops before the changes that follow
				// take its port's address away: a lease is released
				// from that address.
				user := ""
				if p.op.spec.Method == "pppoe" {
					user = p.op.wan.Username
				}
				select {
				case <-r.links.ask(p.op.spec, l, user):
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(linkSwitchWait):
					r.log.Warn("the wan link has not switched yet", "link", p.op.spec)
				}
				r.log.Info("wan link asked for", "link", p.op.spec)
				continue
			}
			if err := p.op.do(); err != nil {
				return fmt.Errorf("apply %s: %w", c.Resource, err)
			}
			applied++
			r.log.Info("network changed", "change", c.String())
		default:
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
	}
	if rec != nil {
		if err := saveOwned(ctx, r.st, rec.after); err != nil {
			return err
		}
		r.shown.setLayout(rec.after.Layout)
	}
	return nil
}

// Facts implements reconcilers.FactPublisher, from the settings planned
// (or applied), the WAN link and the host: the public address is the
// document's, else the address of the WAN link (DHCP lease, ppp0) when it
// is up, else the default route's (invalid when the host has none: the
// zones then have no address records); the upstream resolvers the static
// WAN's, else the link's, else the host's; the LAN address the
// document's, in router mode.
//
// A WAN link not up yet is no "(known after apply)": applying does not
// bring it up (the watch loop does, later, and notifies), and a fact
// still unknown after an apply would fail its readers' apply. The route
// address stands in until then.
//
// The public address is one address: an IPv4 route address is preferred
// to an IPv6 one, so a box gets an A record or an AAAA record, not both.
func (r *Reconciler) Facts(observed reconcilers.Live, planned []reconcilers.Change) reconcilers.Facts {
	var fs reconcilers.Facts
	l, ok := observed.(*live)
	if !ok {
		reconcilers.Unknown(&fs, facts.PublicAddress)
		reconcilers.Unknown(&fs, facts.UpstreamResolvers)
		reconcilers.Unknown(&fs, facts.LANAddress)
		return fs
	}
	s := l.applied
	for _, c := range planned {
		if p, ok := c.Payload.(Settings); ok {
			s = p
		}
	}
	// The running WAN link's lease or session, when up: the address the
	// box has on the Internet, and the resolvers it was given.
	var link wanlink.State
	if l.net != nil && l.net.LinkUp.Up && l.net.Running.Method != "" {
		link = l.net.LinkUp
	}
	for _, c := range planned {
		if nc, ok := c.Payload.(netChange); ok && l.net != nil && nc.op.kind == opLink && nc.op.spec != l.net.Running {
			link = wanlink.State{} // another link, not started yet
		}
	}
	pub := s.PublicAddress
	if !pub.IsValid() {
		pub = link.Address.Addr()
	}
	if !pub.IsValid() {
		pub = l.route
	}
	up := s.Upstreams
	if len(up) == 0 {
		up = link.DNS
	}
	if len(up) == 0 {
		up = l.resolvers
	}
	reconcilers.Publish(&fs, facts.PublicAddress, pub)
	reconcilers.Publish(&fs, facts.UpstreamResolvers, slices.Clone(up))
	reconcilers.Publish(&fs, facts.LANAddress, s.LAN)
	return fs
}

// Watch implements reconcilers.Watcher. Without box hardware it looks at
// the host's route address and resolvers every PollInterval (reading
// only) and notifies when they moved, so that the DNS reconciler follows
// a dynamic address: a poll rather than a netlink subscription, which
// needs no privilege. With box hardware it also runs the WAN link that
// Apply asks for (watchBox).
func (r *Reconciler) Watch(ctx context.Context, notify func()) error {
	if r.ports != nil {
		return r.watchBox(ctx, PollInterval, notify)
	}
	return r.watch(ctx, PollInterval, notify)
}

func (r *Reconciler) watch(ctx context.Context, every time.Duration, notify func()) error {
	look := func() string {
		a, _ := r.host.RouteAddress(ctx)
		rs, err := r.host.Resolvers()
		return fmt.Sprintf("%s %v %v", a, rs, err)
	}
	last := look()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if now := look(); now != last {
			r.log.Info("the host's network moved", "was", last, "now", now)
			last = now
			notify()
		}
	}
}
