package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// dhcpDir is the DHCP server's directory under the data directory: its
// leases.
const dhcpDir = "dhcp"

// Why the DHCP server does not run.
const (
	noDHCPHardware = "no box hardware"
	noDHCPServer   = "server mode: the office's router serves DHCP"
	noDHCPDisabled = "network.dhcp.enabled is false"
)

// dhcpWanted is the rule of the DHCP server: a router's, on its LAN
// bridge, unless the document turns it off; never on a machine that is
// not a box (its LAN is someone else's).
func dhcpWanted(box *hw.Box, st *schema.State) string {
	switch {
	case box == nil:
		return noDHCPHardware
	case st.Network.Mode != "router":
		return noDHCPServer
	case !st.Network.DHCP.Enabled:
		return noDHCPDisabled
	}
	return ""
}

// dhcpServer is the box's DHCP server: one for the daemon's life, serving
// what the DHCP reconciler publishes on its Live, with the leases kept in
// DATA/dhcp; the supervisor only binds and unbinds its socket.
type dhcpServer struct {
	srv *dhcpd.Server
	box *hw.Box
}

func newDHCPServer(live *dhcpd.Live, dataDir string, box *hw.Box, m *metrics.Metrics, logger *slog.Logger) (*dhcpServer, error) {
	srv, err := dhcpd.New(dhcpd.Options{Config: live, Dir: filepath.Join(dataDir, dhcpDir), Logger: logger.With("component", "dhcp"), Metrics: m})
	if err != nil {
		return nil, err
	}
	return &dhcpServer{srv: srv, box: box}, nil
}

// Run follows the settings published until ctx is done: a daemon
// component.
func (d *dhcpServer) Run(ctx context.Context) error { return d.srv.Run(ctx) }

func (d *dhcpServer) kind(l listener) supervisor.Kind {
	return supervisor.Kind{
		Name: "dhcp",
		Want: func(st *schema.State) (supervisor.Spec, string) {
			if off := dhcpWanted(d.box, st); off != "" {
				return supervisor.Spec{}, off
			}
			// Port 67 (--dhcp) of the LAN bridge of the namespace the
			// daemon runs in (a virtual box's, or the box's own).
			return supervisor.Spec{Endpoints: []supervisor.Endpoint{
				{Name: l.flag, Addr: l.def, Network: "udp", Device: hw.LANBridge},
			}}, ""
		},
		Build: func(context.Context, supervisor.Spec) (supervisor.Instance, error) { return dhcpInstance{d.srv}, nil },
	}
}

// dhcpInstance serves the DHCP socket.
type dhcpInstance struct{ srv *dhcpd.Server }

func (dhcpInstance) Serve(_ context.Context, _ string, ln net.Listener) error {
	ln.Close()
	return errors.New("the dhcp server serves no stream endpoint")
}

func (in dhcpInstance) ServePacket(ctx context.Context, _ string, pc net.PacketConn) error {
	return in.srv.ServePacket(ctx, pc)
}
