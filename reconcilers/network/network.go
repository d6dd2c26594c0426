// Package network is, for now, the smallest part of the network
// reconciler: it owns network.public_address and publishes the facts
// that the DNS reconciler reads (the box's public address, its LAN
// address, the upstream resolvers). It configures nothing on the host:
// the interfaces, DHCP and PPPoE are issue 12's, and their fields stay in
// reconcilers.NotApplied until then. What it learns of the host it reads
// (runtime/hostnet): the source address of the default route, the
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
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/reconcilers/facts"
	"mailfountain.dev/mailfountain/runtime/hostnet"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "network"

// MetaApplied is the store meta key of the applied settings (JSON).
const MetaApplied = "network_settings"

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

// Reconciler keeps the settings in the store and publishes the facts.
type Reconciler struct {
	st   *store.Store
	host Host
	log  *slog.Logger
}

// New returns the reconciler of the settings kept in st, reading host.
func New(st *store.Store, host Host, logger *slog.Logger) *Reconciler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{st: st, host: host, log: logger.With("reconciler", Name)}
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler.
func (r *Reconciler) Owns() []string { return []string{"network.public_address"} }

// ReadsFields implements reconcilers.FieldReader: the fields its facts
// come from that the network reconciler of issue 12 will own (they are
// reported as not applied until then).
func (r *Reconciler) ReadsFields() []string {
	return []string{"network.mode", "network.wan.method", "network.wan.dns", "network.lan.address"}
}

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
}

func (l *live) Fingerprint() string {
	b, _ := json.Marshal(l.applied) // plain data: cannot fail
	return fmt.Sprintf("%s route=%s resolvers=%v", b, l.route, l.resolvers)
}

// Load reads the applied settings from st; none before any apply.
func Load(ctx context.Context, st *store.Store) (Settings, error) {
	var s Settings
	v, err := st.Meta(ctx, MetaApplied)
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read network settings: %w", err)
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return s, fmt.Errorf("read network settings: %w", err)
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
	d := describe(l.applied, want)
	if d == "" {
		return nil, nil
	}
	return []reconcilers.Change{{Op: reconcilers.Update, Resource: "network settings", Detail: d, Payload: want}}, nil
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

// Apply stores the settings.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	for _, c := range changes {
		s, ok := c.Payload.(Settings)
		if !ok {
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
		b, _ := json.Marshal(s) // plain data: cannot fail
		if err := r.st.SetMeta(ctx, MetaApplied, string(b)); err != nil {
			return fmt.Errorf("apply network settings: %w", err)
		}
		r.log.Info("network settings applied", "public_address", s.PublicAddress, "upstreams", s.Upstreams, "lan", s.LAN)
	}
	return nil
}

// Facts implements reconcilers.FactPublisher, from the settings planned
// (or applied) and the host: the public address is the document's, else
// the default route's (invalid when the host has none: the zones then
// have no address records); the upstream resolvers the static WAN's,
// else the host's; the LAN address the document's, in router mode.
//
// The public address is one address: an IPv4 route address is preferred
// to an IPv6 one, so a box gets an A record or an AAAA record, not both,
// until the network reconciler of issue 12 knows both of its WAN link.
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
	pub := s.PublicAddress
	if !pub.IsValid() {
		pub = l.route
	}
	up := s.Upstreams
	if len(up) == 0 {
		up = l.resolvers
	}
	reconcilers.Publish(&fs, facts.PublicAddress, pub)
	reconcilers.Publish(&fs, facts.UpstreamResolvers, slices.Clone(up))
	reconcilers.Publish(&fs, facts.LANAddress, s.LAN)
	return fs
}

// Watch implements reconcilers.Watcher: it looks at the host's route
// address and resolvers every PollInterval (reading only) and notifies
// when they moved, so that the DNS reconciler follows a dynamic address.
// A poll rather than a netlink subscription: it needs no privilege and
// costs one socket every few seconds.
func (r *Reconciler) Watch(ctx context.Context, notify func()) error {
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
