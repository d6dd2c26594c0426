package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/hw"
)

// dhcpDoc is a router whose DHCP server hands out .100-.110, and a fixed
// address to the device of mac.
func dhcpDoc(enabled bool, mac string) string {
	return fmt.Sprintf(`system: {model: virtual}
network:
  mode: router
  wan: {method: dhcp}
  lan: {address: 192.168.1.1}
  dhcp:
    enabled: %v
    start: 192.168.1.100
    end: 192.168.1.110
    lease_time: 1h
    reservations: [{mac: "%s", address: 192.168.1.20, name: imprimante}]
smtp: {mode: direct}
domains: [{name: a.example}]
`, enabled, mac)
}

// udhcpcIn asks for a lease from namespace ns with busybox's udhcpc (its
// own script, which configures nothing) and returns "ADDRESS ROUTER DNS
// DOMAIN HOSTNAME", or "" when no server answered 3 DISCOVERs.
func udhcpcIn(t *testing.T, b *virtualBox, ns string) string {
	t.Helper()
	dir := t.TempDir()
	out, script := filepath.Join(dir, "out"), filepath.Join(dir, "script")
	body := "#!/bin/sh\nif [ \"$1\" = bound ]; then echo \"$ip $router $dns $domain $hostname\" > " + out + "; fi\nexit 0\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	log, err := b.in(ns, "busybox", "udhcpc", "-i", hw.PeerPort, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script)
	t.Logf("udhcpc in %s: %v\n%s", ns, err, log)
	data, _ := os.ReadFile(out)
	return strings.TrimSpace(string(data))
}

// TestNetworkDHCPServer: mailfountaind on a virtual box serves DHCP on
// its LAN bridge as the document says: a device of LAN1 gets an address
// of the range with the box as router and DNS, the reserved device of
// LAN2 its fixed address; dhcp.enabled false stops the server.
func TestNetworkDHCPServer(t *testing.T) {
	needTool(t, "busybox")
	b := newVirtualBox(t)
	b.create(t)
	mac := strings.TrimSpace(b.must(t, b.peer("lan2"), "cat", "/sys/class/net/"+hw.PeerPort+"/address"))

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(dhcpDoc(true, mac)), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware(), "--dhcp", ":67")
	waitVersions(t, data, 1)
	waitFor(t, "the dhcp server", func() error {
		ss, err := serverStatuses(t, data)
		if err == nil && (ss["dhcp"].State != "serving" || ss["dhcp"].Addr != "0.0.0.0:67") {
			err = fmt.Errorf("%+v", ss["dhcp"])
		}
		return err
	})

	if got := udhcpcIn(t, b, b.peer("lan1")); got != "192.168.1.100 192.168.1.1 192.168.1.1 a.example" {
		t.Errorf("LAN1's device got %q, want 192.168.1.100 with the box as router and DNS, domain a.example", got)
	}
	if got := udhcpcIn(t, b, b.peer("lan2")); got != "192.168.1.20 192.168.1.1 192.168.1.1 a.example imprimante" {
		t.Errorf("LAN2's reserved device got %q, want 192.168.1.20 named imprimante", got)
	}
	leases, err := os.ReadFile(filepath.Join(data, "dhcp", "leases.json"))
	if err != nil || !strings.Contains(string(leases), `"192.168.1.100"`) || !strings.Contains(string(leases), mac) {
		t.Errorf("leases kept: %s %v", leases, err)
	}

	saveByRename(t, state, dhcpDoc(false, mac))
	waitVersions(t, data, 2)
	waitFor(t, "the dhcp server to stop", func() error {
		ss, err := serverStatuses(t, data)
		if err == nil && (ss["dhcp"].State != "off" || ss["dhcp"].Reason != "network.dhcp.enabled is false") {
			err = fmt.Errorf("%+v", ss["dhcp"])
		}
		return err
	})
	if got := udhcpcIn(t, b, b.peer("lan1")); got != "" {
		t.Errorf("with dhcp.enabled false, a device got %q", got)
	}
}
