package main

import (
	"slices"
	"testing"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// TestDHCPWanted: the DHCP server runs on the LAN bridge of a box in
// router mode with network.dhcp.enabled, and says why not otherwise.
func TestDHCPWanted(t *testing.T) {
	box := hw.VirtualBox("mfbox")
	router := func(enabled bool) *schema.State {
		return &schema.State{Network: schema.Network{Mode: "router", DHCP: schema.DHCP{Enabled: enabled}}}
	}
	server := &schema.State{Network: schema.Network{Mode: "server"}}
	want := []supervisor.Endpoint{{Name: "dhcp", Addr: ":67", Network: "udp", Device: "br-lan"}}
	for _, tc := range []struct {
		name string
		box  *hw.Box
		st   *schema.State
		off  string
	}{
		{"router, enabled", box, router(true), ""},
		{"router, disabled", box, router(false), noDHCPDisabled},
		{"server mode", box, server, noDHCPServer},
		{"no hardware", nil, router(true), noDHCPHardware},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, off := (&dhcpServer{box: tc.box}).kind(listener{flag: "dhcp", def: ":67"}).Want(tc.st)
			if off != tc.off {
				t.Fatalf("off %q, want %q", off, tc.off)
			}
			if off == "" && !slices.Equal(spec.Endpoints, want) {
				t.Errorf("endpoints %+v, want %+v", spec.Endpoints, want)
			}
		})
	}
}
