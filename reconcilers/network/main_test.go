package network

import (
	"os"
	"testing"

	"mailfountain.dev/mailfountain/hw/hwtest"
)

// As root, the tests run inside a virtual box (hwtest): the ports wan,
// lan1 and lan2, each a veth whose peer is eth0 of a namespace of its
// own.
func TestMain(m *testing.M) { os.Exit(hwtest.Main(m)) }

// boxPorts are the box's ports, inside its namespace.
func boxPorts(t *testing.T) *Ports {
	t.Helper()
	b := hwtest.Box(t)
	return &Ports{WAN: b.Profile.WAN, LAN: b.Profile.LAN}
}

// peer is the namespace of the device on the other end of port p.
func peer(t *testing.T, p string) string { return hwtest.Peer(t, p) }
