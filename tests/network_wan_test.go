package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNetworkDaemonDHCPWAN: mailfountaind on a virtual box, router mode
// with a DHCP WAN. Its watch loop runs the DHCP client: the lease that
// dnsmasq, in the WAN peer's namespace, hands out lands on the wan port
// with the default route via the lease's router, and the records of the
// domain follow the lease's address. An edit to server mode moves the
// ports into br-lan and the addresses, in place; the lease is released
// and its address removed.
func TestNetworkDaemonDHCPWAN(t *testing.T) {
	b := newVirtualBox(t)
	dnsmasq := needTool(t, "dnsmasq")
	b.create(t)
	wan := b.peer("wan")
	b.must(t, wan, "ip", "addr", "add", "10.99.0.1/24", "dev", "eth0")
	dir := t.TempDir()
	leases := filepath.Join(dir, "leases")
	srv := exec.Command(b.ip, "netns", "exec", wan, dnsmasq, "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=eth0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=10.99.0.50,10.99.0.59,255.255.255.0,2m",
		"--dhcp-option=3,10.99.0.1", "--dhcp-option=6,10.99.0.53",
		"--pid-file="+filepath.Join(dir, "pid"), "--dhcp-leasefile="+leases)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware())
	waitVersions(t, data, 1)

	lease := regexp.MustCompile(`inet (10\.99\.0\.5\d)/24`)
	var addr string
	waitFor(t, "a lease on wan", func() error {
		out := b.must(t, b.name, "ip", "-4", "addr", "show", "dev", "wan")
		m := lease.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("wan: %s", out)
		}
		addr = m[1]
		return nil
	})
	waitFor(t, "the default route via the lease's router", func() error {
		if out := b.must(t, b.name, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via 10.99.0.1 dev wan") {
			return fmt.Errorf("routes: %s", out)
		}
		return nil
	})
	// The daemon's DNS reconciler follows the public address fact (mfapply
	// dns records computes its own, outside the box).
	waitFor(t, "the records of a.example with the lease's address", func() error {
		out, err := os.ReadFile(filepath.Join(data, "dns", "registrar", "a.example.zone"))
		if err != nil || !strings.Contains(string(out), "A\t"+addr) {
			return fmt.Errorf("records: %v\n%s", err, out)
		}
		return nil
	})

	saveByRename(t, state, strings.Replace(stateDoc("bob"), "network: {mode: router, wan: {method: dhcp}}",
		"network: {mode: server, wan: {method: static, address: 10.99.0.9/24, gateway: 10.99.0.1, dns: [10.99.0.53]}, dhcp: {enabled: false}}", 1))
	waitVersions(t, data, 2)
	waitFor(t, "server mode", func() error {
		links := b.must(t, b.name, "ip", "-o", "link", "show", "master", "br-lan")
		addrs := b.must(t, b.name, "ip", "-4", "-o", "addr", "show")
		for _, p := range []string{"wan", "lan1", "lan2"} {
			if !strings.Contains(links, " "+p+"@") {
				return fmt.Errorf("%s not in br-lan:\n%s", p, links)
			}
		}
		if !strings.Contains(addrs, "br-lan    inet 10.99.0.9/24") || strings.Contains(addrs, addr+"/") || strings.Contains(addrs, "192.168.1.1/") {
			return fmt.Errorf("addresses:\n%s", addrs)
		}
		return nil
	})
	waitFor(t, "the lease released", func() error {
		if b, err := os.ReadFile(leases); err != nil || strings.Contains(string(b), addr) {
			return fmt.Errorf("dnsmasq's leases: %q %v", b, err)
		}
		return nil
	})
}
