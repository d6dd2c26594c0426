package network

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/dhcpclient"
	"mailfountain.dev/mailfountain/schema/schematest"
)

// dnsmasq runs dnsmasq as the upstream router's DHCP server on eth0 of
// peer (10.99.0.1/24), handing out first..last with a lease of 2 minutes
// (dnsmasq's least), router 10.99.0.1 and DNS servers 10.99.0.53 and
// 10.99.0.54; stop kills it by its PID and waits for it.
func dnsmasq(t *testing.T, peer, first, last, leases string) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", peer, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=eth0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range="+first+","+last+",255.255.255.0,2m",
		"--dhcp-option=3,10.99.0.1", "--dhcp-option=6,10.99.0.53,10.99.0.54",
		"--pid-file="+filepath.Join(dir, "pid"), "--dhcp-leasefile="+leases, "--log-dhcp")
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq (a Debian package): %v", err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("dnsmasq's log:\n%s", b)
		}
	}
	t.Cleanup(stop)
	return stop
}

var wanAddr = regexp.MustCompile(`(?m)^wan: up (10\.99\.0\.\d+)/24$`)

// dhcpBox is a box in router mode with a DHCP WAN, and the upstream
// router's dnsmasq, handing out first..last.
type dhcpBox struct {
	*boxEngine
	wan, leases string
	stopServer  func()
	stopWatch   func()
}

func newDHCPBox(t *testing.T, first, last string) *dhcpBox {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := &dhcpBox{boxEngine: newBoxEngine(t, Config{NewDHCP: func(iface string) WANLink {
		return dhcpclient.New(dhcpclient.Config{Interface: iface, Logger: logger})
	}})}
	b.wan = peer(t, "wan")
	ip(t, "-n", b.wan, "addr", "add", "10.99.0.1/24", "dev", "eth0")
	t.Cleanup(func() { exec.Command("ip", "-n", b.wan, "addr", "flush", "dev", "eth0").Run() })
	b.leases = filepath.Join(t.TempDir(), "leases")
	b.stopServer = dnsmasq(t, b.wan, first, last, b.leases)

	doc := schematest.Load(t, "system: {model: virtual}\nnetwork: {wan: {method: dhcp}}\n")
	plan := b.apply(t, doc)
	if !slices.Contains(plan, "~ wan link (dhcp client on wan)") {
		t.Errorf("plan %q: no wan link", plan)
	}
	b.stopWatch = b.watch(t, doc, PollInterval)
	t.Cleanup(b.stopWatch)
	return b
}

// addr is the WAN port's address, "" when it has none.
func (b *dhcpBox) addr(t *testing.T) string {
	if m := wanAddr.FindStringSubmatch(layoutNow(t)); m != nil {
		return m[1]
	}
	return ""
}

// leased waits for a lease of an address with prefix on the WAN port,
// its default route and its facts; it returns the address.
func (b *dhcpBox) leased(t *testing.T, within time.Duration, prefix string) string {
	t.Helper()
	waitFor(t, within, "a lease on wan", func() bool { return strings.HasPrefix(b.addr(t), prefix) })
	a := b.addr(t)
	waitFor(t, 10*time.Second, "the default route via the lease's router", func() bool {
		return strings.Contains(layoutNow(t), "default via 10.99.0.1 on wan")
	})
	waitFor(t, 10*time.Second, "the lease's facts", func() bool {
		f := b.rd.facts()
		return f["public"] == a && f["upstreams"] == "[10.99.0.53 10.99.0.54]"
	})
	return a
}

// TestDHCPWAN: the box's WAN gets its address by DHCP from dnsmasq in
// the upstream router's namespace: the address on the port, the default
// route via the lease's router, the public address and the upstream
// resolvers from the lease. The lease is released when the watch stops,
// and the address removed.
func TestDHCPWAN(t *testing.T) {
	b := newDHCPBox(t, "10.99.0.50", "10.99.0.59")
	a := b.leased(t, 30*time.Second, "10.99.0.5")
	if l := layoutNow(t); !strings.Contains(l, "forwarding 1 1") || !strings.Contains(l, "br-lan: up 192.168.1.1/24") {
		t.Errorf("router with a lease:\n%s", l)
	}
	if data, err := os.ReadFile(b.leases); err != nil || !strings.Contains(string(data), a) {
		t.Fatalf("dnsmasq's leases: %q %v", data, err)
	}

	// Stopped, the client releases the lease: dnsmasq forgets it.
	b.stopWatch()
	waitFor(t, 10*time.Second, "the lease released", func() bool {
		data, err := os.ReadFile(b.leases)
		return err == nil && !strings.Contains(string(data), a)
	})
}

// TestDHCPWANNewServer: dnsmasq restarted with another range answers the
// renewal at T1 (a minute after the ACK: dnsmasq's least lease is 2
// minutes) with a NAK; the client discovers again, and the new address
// replaces the first on the port and in the facts.
func TestDHCPWANNewServer(t *testing.T) {
	if testing.Short() {
		t.Skip("a renewal at T1 is a minute away")
	}
	b := newDHCPBox(t, "10.99.0.50", "10.99.0.59")
	first := b.leased(t, 30*time.Second, "10.99.0.5")
	got := time.Now()
	b.stopServer()
	os.Remove(b.leases)
	dnsmasq(t, b.wan, "10.99.0.70", "10.99.0.79", b.leases)
	b.leased(t, 150*time.Second, "10.99.0.7")
	// The NAK answered the renewal, unicast from the leased address, at
	// T1 (60 s); a renewal lost would have waited for the rebinding at T2
	// (105 s).
	if took := time.Since(got); took > 100*time.Second {
		t.Errorf("the new lease came after %v: the renewal at T1 was not answered", took)
	}
	if l := layoutNow(t); strings.Contains(l, first+"/") {
		t.Errorf("the first lease's address is still there:\n%s", l)
	}
}
