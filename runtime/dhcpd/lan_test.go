//go:build linux

package dhcpd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/hw/hwtest"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

// The tests of this file run inside a virtual box (hwtest): the box's
// LAN bridge carries 192.168.1.1/24 over lan1 and lan2, and real DHCP
// clients (dhclient, busybox's udhcpc) ask from the namespaces plugged
// into them.
func TestMain(m *testing.M) { os.Exit(hwtest.Main(m)) }

// lan makes the box's LAN bridge (as the network reconciler does in
// router mode) and removes it after the test.
func lan(t *testing.T) {
	t.Helper()
	hwtest.Box(t)
	for _, tool := range []string{"ip", "dhclient", "busybox"} {
		testenv.NeedTool(t, tool)
	}
	hwtest.Run(t, "ip", "link", "add", hw.LANBridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", hw.LANBridge).Run() })
	for _, port := range []string{"lan1", "lan2"} {
		hwtest.Run(t, "ip", "link", "set", port, "master", hw.LANBridge, "up")
	}
	hwtest.Run(t, "ip", "addr", "add", "192.168.1.1/24", "dev", hw.LANBridge)
	hwtest.Run(t, "ip", "link", "set", hw.LANBridge, "up")
}

// macOf is the MAC of what is plugged into port.
func macOf(t *testing.T, port string) net.HardwareAddr {
	t.Helper()
	out := hwtest.Run(t, "ip", "netns", "exec", hwtest.Peer(t, port), "cat", "/sys/class/net/"+hw.PeerPort+"/address")
	m, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// serving is a server answering on the LAN bridge.
type serving struct {
	s    *Server
	m    *countMetrics
	stop func()
}

// serve runs a server of cfg on the LAN bridge, its leases in dir, until
// stop or the test's end.
func serve(t *testing.T, cfg *Config, dir string) *serving {
	t.Helper()
	live := &Live{}
	live.Publish(cfg)
	m := &countMetrics{replies: map[string]int{}}
	s, err := New(Options{Config: live, Dir: dir, Metrics: m, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := server4.NewIPv4UDPConn(hw.LANBridge, &net.UDPAddr{Port: ServerPort})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePacket(ctx, pc) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &serving{s: s, m: m, stop: stop}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func lanConfig() *Config {
	return &Config{
		Enabled:   true,
		Server:    netip.MustParsePrefix("192.168.1.1/24"),
		Start:     netip.MustParseAddr("192.168.1.100"),
		End:       netip.MustParseAddr("192.168.1.250"),
		LeaseTime: time.Hour,
		Domain:    "ma-societe.fr",
	}
}

// lease is what a client got.
type lease struct {
	ip, mask, router, dns, domain, hostname string
}

// udhcpc asks for a lease from the namespace plugged into port, with
// busybox's udhcpc: it quits once bound, or after 3 DISCOVERs
// unanswered (ok false).
func udhcpc(t *testing.T, port string) (lease, bool) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "script")
	// udhcpc's script is told the lease in its environment; this one
	// only writes it down (nothing is configured in the namespace).
	writeScript(t, script, `if [ "$1" = bound ]; then echo "$ip|$subnet|$router|$dns|$domain|$hostname" > `+out+`; fi`)
	cmd := exec.Command("ip", "netns", "exec", hwtest.Peer(t, port), "busybox", "udhcpc",
		"-i", hw.PeerPort, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script)
	b, err := cmd.CombinedOutput()
	t.Logf("udhcpc on %s: %v\n%s", port, err, b)
	data, rerr := os.ReadFile(out)
	if err != nil || rerr != nil {
		return lease{}, false
	}
	f := strings.Split(strings.TrimSpace(string(data)), "|")
	return lease{ip: f[0], mask: f[1], router: f[2], dns: f[3], domain: f[4], hostname: f[5]}, true
}

// dhclient asks for a lease from the namespace plugged into port with
// ISC's dhclient, its own script, configuration and lease file (never
// the system's: its script would rewrite resolv.conf). The process runs
// until the lease is bound (or 20 s) and is then killed.
func dhclient(t *testing.T, port string) (lease, bool) {
	t.Helper()
	return dhclientIn(t, port, t.TempDir())
}

// dhclientIn is dhclient with its files in dir: a lease file left by an
// earlier run makes it ask for that lease's address first (INIT-REBOOT,
// a REQUEST without a DISCOVER).
func dhclientIn(t *testing.T, port, dir string) (lease, bool) {
	t.Helper()
	out := filepath.Join(dir, "out")
	os.Remove(out)
	script := filepath.Join(dir, "script")
	writeScript(t, script, `case "$reason" in BOUND|REBOOT) echo "$new_ip_address|$new_subnet_mask|$new_routers|$new_domain_name_servers|$new_domain_name|$new_host_name" > `+out+`;; esac`)
	conf := filepath.Join(dir, "dhclient.conf")
	if err := os.WriteFile(conf, []byte("request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logs strings.Builder
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", hwtest.Peer(t, port), "dhclient", "-d", "-v", "-1",
		"-sf", script, "-cf", conf, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), hw.PeerPort)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("dhclient on %s:\n%s", port, logs.String())
	}()
	for ctx.Err() == nil {
		if data, err := os.ReadFile(out); err == nil && strings.Count(string(data), "\n") > 0 {
			f := strings.Split(strings.TrimSpace(string(data)), "|")
			return lease{ip: f[0], mask: f[1], router: f[2], dns: f[3], domain: f[4], hostname: f[5]}, true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return lease{}, false
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestClientsGetALease(t *testing.T) {
	lan(t)
	serve(t, lanConfig(), t.TempDir())
	for _, c := range []struct {
		name string
		ask  func(*testing.T, string) (lease, bool)
		port string
	}{
		{"dhclient", dhclient, "lan1"},
		{"udhcpc", udhcpc, "lan2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, ok := c.ask(t, c.port)
			if !ok {
				t.Fatal("no lease")
			}
			a, err := netip.ParseAddr(l.ip)
			if err != nil || a.Less(netip.MustParseAddr("192.168.1.100")) || netip.MustParseAddr("192.168.1.250").Less(a) {
				t.Errorf("address %q outside the range", l.ip)
			}
			want := lease{ip: l.ip, mask: "255.255.255.0", router: "192.168.1.1", dns: "192.168.1.1", domain: "ma-societe.fr"}
			if l != want {
				t.Errorf("lease %+v, want %+v", l, want)
			}
		})
	}
}

func TestReservation(t *testing.T) {
	lan(t)
	cfg := lanConfig()
	cfg.Reservations = []Reservation{{MAC: macOf(t, "lan1"), Addr: netip.MustParseAddr("192.168.1.20"), Name: "imprimante"}}
	serve(t, cfg, t.TempDir())
	for _, ask := range []func(*testing.T, string) (lease, bool){udhcpc, dhclient} {
		l, ok := ask(t, "lan1")
		if !ok || l.ip != "192.168.1.20" || l.hostname != "imprimante" {
			t.Errorf("reserved device got %+v (%v), want 192.168.1.20 named imprimante", l, ok)
		}
	}
}

// TestRestartKeepsLeases: after a restart of the server, another device
// asking first does not get the address of the first one, which gets
// its own again.
func TestRestartKeepsLeases(t *testing.T) {
	lan(t)
	dir := t.TempDir()
	srv := serve(t, lanConfig(), dir)
	first, ok := udhcpc(t, "lan1")
	if !ok {
		t.Fatal("no lease")
	}
	srv.stop()
	serve(t, lanConfig(), dir)
	other, ok := udhcpc(t, "lan2")
	if !ok || other.ip == first.ip {
		t.Fatalf("after the restart, the other device got %+v (%v); the first one holds %s", other, ok, first.ip)
	}
	again, ok := dhclient(t, "lan1")
	if !ok || again.ip != first.ip {
		t.Fatalf("after the restart, the first device got %+v (%v), want %s", again, ok, first.ip)
	}
}

// TestInitReboot: dhclient, started again with its lease file, asks for
// its address with a REQUEST alone; after a restart of the server too,
// it gets it.
func TestInitReboot(t *testing.T) {
	lan(t)
	dir := t.TempDir()
	srv := serve(t, lanConfig(), dir)
	client := t.TempDir()
	first, ok := dhclientIn(t, "lan1", client)
	if !ok {
		t.Fatal("no lease")
	}
	srv.stop()
	srv = serve(t, lanConfig(), dir)
	// Another device first: the address stays the first one's.
	if other, ok := udhcpc(t, "lan2"); !ok || other.ip == first.ip {
		t.Fatalf("the other device got %+v (%v)", other, ok)
	}
	again, ok := dhclientIn(t, "lan1", client)
	if !ok || again.ip != first.ip {
		t.Fatalf("INIT-REBOOT got %+v (%v), want %s", again, ok, first.ip)
	}
	// It did not DISCOVER: one offer (to the other device), two ACKs.
	if o, a := srv.m.count(Offer), srv.m.count(Ack); o != 1 || a != 2 {
		t.Errorf("the restarted server sent %d offers and %d acks, want 1 and 2", o, a)
	}
}

func TestExhaustedRange(t *testing.T) {
	lan(t)
	cfg := lanConfig()
	cfg.End = cfg.Start
	serve(t, cfg, t.TempDir())
	if l, ok := udhcpc(t, "lan1"); !ok || l.ip != "192.168.1.100" {
		t.Fatalf("first device: %+v %v", l, ok)
	}
	if l, ok := udhcpc(t, "lan2"); ok {
		t.Fatalf("a device got %+v from an exhausted range", l)
	}
}

func TestDisabled(t *testing.T) {
	lan(t)
	cfg := lanConfig()
	cfg.Enabled = false
	serve(t, cfg, t.TempDir())
	if l, ok := udhcpc(t, "lan1"); ok {
		t.Fatalf("a disabled server handed out %+v", l)
	}
}
