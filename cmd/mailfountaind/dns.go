package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"mailfountain.dev/mailfountain/runtime/dnsd"
	"mailfountain.dev/mailfountain/runtime/dnsd/forward"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// dnsTCP is the name of the DNS server's TCP endpoint; its UDP endpoint
// is named after the flag, "dns", which sets both.
const dnsTCP = "dns-tcp"

// noDNS is why the DNS server does not run.
const noDNS = "server mode and no domain delegated to the box"

// dnsWanted is the rule of the DNS server: a router answers its LAN
// (the resolver the DHCP server hands out, and the setup wizard's names),
// and any box serves the zones delegated to it.
func dnsWanted(st *schema.State) bool {
	return st.Network.Mode == "router" || slices.ContainsFunc(st.Domains, func(d schema.Domain) bool { return d.DNS.Delegated })
}

// dnsServer is the box's DNS server: one for the daemon's life, serving
// what the DNS reconciler publishes on its Live, so that no apply
// rebuilds it; the supervisor only binds and unbinds its endpoints.
type dnsServer struct {
	srv *dnsd.Server
}

func newDNSServer(live *dnszone.Live, m *metrics.Metrics, logger *slog.Logger) *dnsServer {
	logger = logger.With("component", "dns")
	fwd := forward.New(forward.Config{
		// Asked at each exchange: the LAN's upstreams as last published.
		Upstreams: func() []netip.AddrPort {
			set, _ := live.Load()
			return set.LAN.Upstreams
		},
		Logger:  logger,
		Metrics: m,
	})
	return &dnsServer{srv: dnsd.New(dnsd.Config{Zones: live, Recursor: fwd, Logger: logger, Metrics: m})}
}

// Run follows the zones published until ctx is done: a daemon component.
func (d *dnsServer) Run(ctx context.Context) error { return d.srv.Run(ctx) }

func (d *dnsServer) kind(l listener) supervisor.Kind {
	return supervisor.Kind{
		Name: "dns",
		Want: func(st *schema.State) (supervisor.Spec, string) {
			if !dnsWanted(st) {
				return supervisor.Spec{}, noDNS
			}
			return supervisor.Spec{Endpoints: []supervisor.Endpoint{
				{Name: l.flag, Addr: l.def, Network: "udp"},
				{Name: dnsTCP, Addr: l.def, NoKeepAlive: true},
			}}, ""
		},
		Build: func(context.Context, supervisor.Spec) (supervisor.Instance, error) { return dnsInstance{d.srv}, nil },
		Drain: dnsd.DefaultTCPLifetime,
	}
}

// dnsInstance serves the DNS endpoints.
type dnsInstance struct{ srv *dnsd.Server }

func (in dnsInstance) Serve(ctx context.Context, _ string, ln net.Listener) error {
	return in.srv.ServeTCP(ctx, ln)
}

func (in dnsInstance) ServePacket(ctx context.Context, _ string, pc net.PacketConn) error {
	return in.srv.ServeUDP(ctx, pc)
}
