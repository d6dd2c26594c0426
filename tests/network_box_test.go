package tests

// End to end on a virtual box (package hw): the daemon drives the box's
// ports, firewall and DHCP server for real, and the test plays the
// upstream router (dnsmasq in the WAN peer's namespace) and the office's
// computers (udhcpc and dhclient in the LAN peers' namespaces). Nothing
// touches the host's network.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// The upstream network of the WAN peer.
const (
	upstreamRouter = "10.77.0.1"
	upstreamNet    = "10.77.0.0/24"
)

// echoServer answers each TCP connection with its name and the client's
// address, then closes it.
const echoServer = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall((sys.argv[2] + " " + a[0] + "\n").encode())
    c.close()
`

// echoClient prints what the server at argv[1]:argv[2] says, or fails
// within 2 s.
const echoClient = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print(s.recv(200).decode().strip())
`

// udhcpcScript configures the interface with the lease and writes
// "address router dns" to the file $OUT (set in the script by lease).
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
	echo "$ip $router $dns" > "$OUT"
	;;
deconfig)
	ip addr flush dev "$interface"
	;;
esac
`

// dhclientScript is udhcpcScript for dhclient's variables.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
	ip addr flush dev "$interface"
	ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
	for r in $new_routers; do ip route replace default via "$r" dev "$interface"; break; done
	echo "$new_ip_address $new_routers $new_domain_name_servers" > "$OUT"
	;;
esac
`

// boxNet is a test's virtual box with its upstream router and the
// daemon driving it.
type boxNet struct {
	*virtualBox
	dir, data, state string
	d                *daemonProc
}

// newBoxNet makes the box's namespaces, the upstream router (10.77.0.1
// with dnsmasq handing out 10.77.0.50-60, 2 min leases) and an echo
// server on the upstream router's port 8080.
func newBoxNet(t *testing.T) *boxNet {
	t.Helper()
	b := &boxNet{virtualBox: newVirtualBox(t), dir: t.TempDir()}
	for _, tool := range []string{"dnsmasq", "udhcpc", "dhclient", "nft", "python3"} {
		needTool(t, tool)
	}
	b.data = filepath.Join(b.dir, "data")
	b.state = filepath.Join(b.dir, "state.yaml")
	b.create(t)
	wan := b.peer("wan")
	b.must(t, wan, b.ip, "addr", "add", upstreamRouter+"/24", "dev", "eth0")
	b.background(t, wan, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range=10.77.0.50,10.77.0.60,2m",
		"--dhcp-option=3,"+upstreamRouter, "--dhcp-option=6,"+upstreamRouter,
		"--dhcp-leasefile="+filepath.Join(b.dir, "upstream.leases"), "--pid-file=")
	b.background(t, wan, "python3", "-c", echoServer, "8080", "upstream")
	return b
}

// background runs a program in namespace ns until the test ends.
func (b *boxNet) background(t *testing.T, ns string, args ...string) {
	t.Helper()
	cmd := exec.Command(b.ip, append([]string{"netns", "exec", ns}, args...)...)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s in %s said:\n%s", args[0], ns, out.String())
		}
	})
}

// start writes doc and starts the daemon on the box.
func (b *boxNet) start(t *testing.T, doc string) {
	t.Helper()
	if err := os.WriteFile(b.state, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// Inside the box the standard ports are the box's own.
	b.d = startDaemonProc(t, "--data", b.data, "-f", b.state, "--hardware", b.hardware(), "--resync", "2s", "--dhcp", ":67", "--dns", ":53")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mailfountaind said:\n%s", b.d.stderr.String())
		}
	})
}

// apply saves doc over the state file and waits for version n.
func (b *boxNet) apply(t *testing.T, doc string, n int) {
	t.Helper()
	saveByRename(t, b.state, doc)
	waitVersions(t, b.data, n)
}

// addr4 is the first IPv4 address of dev in namespace ns, invalid when
// it has none.
func (b *boxNet) addr4(t *testing.T, ns, dev string) netip.Prefix {
	t.Helper()
	out, err := b.in(ns, b.ip, "-j", "-4", "addr", "show", "dev", dev)
	if err != nil {
		return netip.Prefix{}
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if json.Unmarshal([]byte(out), &links) != nil || len(links) == 0 || len(links[0].AddrInfo) == 0 {
		return netip.Prefix{}
	}
	a := links[0].AddrInfo[0]
	p, _ := netip.ParsePrefix(fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
	return p
}

// lease runs a DHCP client (udhcpc or dhclient) on the eth0 of namespace
// ns until it configures an address, and returns "address router dns".
func (b *boxNet) lease(t *testing.T, ns, client string) []string {
	t.Helper()
	script := filepath.Join(b.dir, client+"-"+ns+".sh")
	out := filepath.Join(b.dir, client+"-"+ns+".out")
	body := udhcpcScript
	if client == "dhclient" {
		body = dhclientScript
	}
	// dhclient runs its script with an environment of its own: the
	// output file is written into the script.
	body = strings.Replace(body, "#!/bin/sh\n", "#!/bin/sh\nOUT="+out+"\n", 1)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	var args []string
	switch client {
	case "udhcpc":
		args = []string{"busybox", "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "20", "-T", "1"}
	default:
		args = []string{"dhclient", "-d", "-1", "-sf", script,
			"-lf", filepath.Join(b.dir, ns+".dhclient.leases"), "-pf", filepath.Join(b.dir, ns+".dhclient.pid"), "eth0"}
	}
	// The client runs until it has configured the lease, then is killed
	// (no release): the next lease of the test starts afresh.
	cmd := exec.Command(b.ip, append([]string{"netns", "exec", ns}, args...)...)
	var log testenv.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s in %s said:\n%s", client, ns, log.String())
		}
	}()
	var got []string
	waitFor(t, client+" lease in "+ns, func() error {
		data, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		got = strings.Fields(string(data))
		if len(got) < 2 {
			return fmt.Errorf("lease %q", data)
		}
		return nil
	})
	return got
}

// dial connects from namespace ns to host:port with echoClient and
// returns what the server said.
func (b *boxNet) dial(ns, host string, port int) (string, error) {
	out, err := b.in(ns, "python3", "-c", echoClient, host, fmt.Sprint(port))
	return strings.TrimSpace(out), err
}

// quietDuring records the box's netlink and nftables events while f runs
// and returns them: a reconcile of an unchanged document must make none.
func (b *boxNet) quietDuring(t *testing.T, f func()) []string {
	t.Helper()
	var events []string
	for _, mon := range [][]string{{b.ip, "monitor", "link", "address", "route"}, {"nft", "monitor"}} {
		cmd := exec.Command(b.ip, append([]string{"netns", "exec", b.name}, mon...)...)
		var out testenv.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			for l := range strings.Lines(out.String()) {
				if l = strings.TrimSpace(l); l != "" {
					events = append(events, mon[len(mon)-1]+": "+l)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the monitors subscribe
	f()
	return events
}

func routerDoc(lan1MAC string, forwardTo string) string {
	return fmt.Sprintf(`system: {model: M500}
network:
  mode: router
  wan: {method: dhcp}
  lan: {address: 192.168.1.1}
  dhcp:
    start: 192.168.1.100
    end: 192.168.1.150
    reservations: [{mac: "%s", address: 192.168.1.50}]
  forwards: [{port: 2222, to: %s, to_port: 8022}]
smtp: {mode: direct}
`, lan1MAC, forwardTo)
}

const serverDoc = `system: {model: M500}
network:
  mode: server
  wan: {method: static, address: 10.77.0.9/24, gateway: 10.77.0.1, dns: [10.77.0.1]}
smtp: {mode: direct}
`

// TestNetworkRouter: the whole router on a virtual box. Its WAN gets an
// address from the upstream router's DHCP server; the LAN's computers
// get theirs from the box (a reservation for LAN1) and reach the
// upstream network through NAT; a port forward carries a connection from
// the upstream network to a server on LAN1; a port the box does not
// serve is closed from the WAN. A resync of the same document changes
// nothing; a firewall table flushed by hand is put back; the box switches
// to server mode (its ports a switch to the upstream network) and back.
func TestNetworkRouter(t *testing.T) {
	b := newBoxNet(t)
	lan1MAC := strings.TrimSpace(b.must(t, b.peer("lan1"), "cat", "/sys/class/net/eth0/address"))
	b.start(t, routerDoc(lan1MAC, "192.168.1.50"))
	waitVersions(t, b.data, 1)

	var wanAddr netip.Prefix
	waitFor(t, "the WAN's lease from the upstream router", func() error {
		wanAddr = b.addr4(t, b.name, "wan")
		if !wanAddr.IsValid() || !netip.MustParsePrefix(upstreamNet).Contains(wanAddr.Addr()) {
			return fmt.Errorf("wan has %v", wanAddr)
		}
		return nil
	})
	if routes := b.must(t, b.name, b.ip, "-4", "route", "show", "default"); !strings.Contains(routes, "via "+upstreamRouter) {
		t.Errorf("default route %q, want via %s", routes, upstreamRouter)
	}
	if got := b.addr4(t, b.name, "br-lan"); got.String() != "192.168.1.1/24" {
		t.Errorf("br-lan has %v, want 192.168.1.1/24", got)
	}

	// LAN1 by udhcpc, with its reservation; LAN2 by dhclient, in the range.
	l1 := b.lease(t, b.peer("lan1"), "udhcpc")
	if l1[0] != "192.168.1.50" || l1[1] != "192.168.1.1" {
		t.Errorf("LAN1's lease %v, want 192.168.1.50 via 192.168.1.1", l1)
	}
	l2 := b.lease(t, b.peer("lan2"), "dhclient")
	if a := netip.MustParseAddr(l2[0]); a.Compare(netip.MustParseAddr("192.168.1.100")) < 0 || a.Compare(netip.MustParseAddr("192.168.1.150")) > 0 || l2[1] != "192.168.1.1" {
		t.Errorf("LAN2's lease %v, want 192.168.1.100-150 via 192.168.1.1", l2)
	}

	// NAT: the upstream router sees the box's WAN address.
	var said string
	waitFor(t, "LAN2 reaching the upstream router through NAT", func() (err error) {
		said, err = b.dial(b.peer("lan2"), upstreamRouter, 8080)
		return err
	})
	if want := "upstream " + wanAddr.Addr().String(); said != want {
		t.Errorf("the upstream router says %q, want %q", said, want)
	}

	// The port forward, to a server on LAN1, which sees the true client.
	b.background(t, b.peer("lan1"), "python3", "-c", echoServer, "8022", "lan1")
	forward := func() error {
		said, err := b.dial(b.peer("wan"), wanAddr.Addr().String(), 2222)
		if err == nil && said != "lan1 "+upstreamRouter {
			err = fmt.Errorf("the forward reached %q", said)
		}
		return err
	}
	waitFor(t, "the port forward to LAN1", forward)
	if said, err := b.dial(b.peer("wan"), wanAddr.Addr().String(), 2223); err == nil {
		t.Errorf("port 2223 is open from the WAN: %q", said)
	}

	// A resync of the same document changes nothing on the box.
	events := b.quietDuring(t, func() {
		if err := b.d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // a reload and a resync
	})
	if len(events) > 0 {
		t.Errorf("a reconcile of the same document changed the box:\n%s", strings.Join(events, "\n"))
	}

	// Drift: the firewall's table flushed by hand is put back.
	tables := b.must(t, b.name, "nft", "list", "tables")
	var table string
	for l := range strings.Lines(tables) {
		if strings.Contains(l, "mailfountain") {
			table = strings.TrimPrefix(strings.TrimSpace(l), "table ")
		}
	}
	if table == "" {
		t.Fatalf("no table of MailFountain's:\n%s", tables)
	}
	// The firewall's watch puts it right at once, faster than a test can
	// see the hole: the log tells the correction.
	corrections := strings.Count(b.d.stderr.String(), "firewall drift corrected")
	b.must(t, b.name, append([]string{"nft", "flush", "table"}, strings.Fields(table)...)...)
	waitFor(t, "the flush by hand corrected", func() error {
		if strings.Count(b.d.stderr.String(), "firewall drift corrected") == corrections {
			return errors.New("no correction logged")
		}
		return nil
	})
	waitFor(t, "the port forward back after a flush by hand", forward)

	// Server mode: the three ports are a switch, so LAN2 gets its lease
	// from the upstream router through the box.
	b.apply(t, serverDoc, 2)
	waitFor(t, "server mode's bridge", func() error {
		out, err := b.in(b.name, b.ip, "-o", "link", "show", "master", "br-lan")
		if err != nil {
			return err
		}
		for _, p := range []string{"wan", "lan1", "lan2"} {
			if !strings.Contains(out, " "+p+"@") {
				return fmt.Errorf("%s is not in br-lan:\n%s", p, out)
			}
		}
		if got := b.addr4(t, b.name, "br-lan"); got.String() != "10.77.0.9/24" {
			return fmt.Errorf("br-lan has %v", got)
		}
		return nil
	})
	b.must(t, b.peer("lan2"), b.ip, "addr", "flush", "dev", "eth0")
	if l := b.lease(t, b.peer("lan2"), "udhcpc"); !netip.MustParsePrefix(upstreamNet).Contains(netip.MustParseAddr(l[0])) {
		t.Errorf("in server mode LAN2's lease is %v, want one of the upstream router's", l)
	}
	if said, err := b.dial(b.peer("lan2"), "10.77.0.9", 2222); err == nil {
		t.Errorf("server mode still forwards port 2222: %q", said)
	}

	// And back to router mode.
	b.apply(t, routerDoc(lan1MAC, "192.168.1.50"), 3)
	waitFor(t, "router mode again", func() error {
		out, err := b.in(b.name, b.ip, "-o", "link", "show", "master", "br-lan")
		if err != nil {
			return err
		}
		if strings.Contains(out, " wan@") || !strings.Contains(out, " lan1@") {
			return fmt.Errorf("br-lan's ports:\n%s", out)
		}
		if got := b.addr4(t, b.name, "br-lan"); got.String() != "192.168.1.1/24" {
			return fmt.Errorf("br-lan has %v", got)
		}
		if got := b.addr4(t, b.name, "wan"); !got.IsValid() {
			return errors.New("wan has no address yet")
		}
		return nil
	})
	b.must(t, b.peer("lan1"), b.ip, "addr", "flush", "dev", "eth0")
	if l := b.lease(t, b.peer("lan1"), "udhcpc"); l[0] != "192.168.1.50" {
		t.Errorf("back in router mode LAN1's lease is %v, want its reservation", l)
	}
}

// TestNetworkConfirmHeals: an admin on LAN1 applies, under commit-confirm,
// a LAN address that cuts the box off from them; with no one left to
// confirm, the box puts the previous version back and they reach it
// again.
func TestNetworkConfirmHeals(t *testing.T) {
	b := newBoxNet(t)
	lan1MAC := strings.TrimSpace(b.must(t, b.peer("lan1"), "cat", "/sys/class/net/eth0/address"))
	doc := routerDoc(lan1MAC, "192.168.1.50")
	b.start(t, doc)
	waitVersions(t, b.data, 1)
	if l := b.lease(t, b.peer("lan1"), "udhcpc"); l[0] != "192.168.1.50" {
		t.Fatalf("LAN1's lease %v", l)
	}
	// The admin reaches the box's DNS server over TCP.
	reach := func() error {
		_, err := b.in(b.peer("lan1"), "python3", "-c", "import socket; socket.create_connection(('192.168.1.1', 53), timeout=1).close()")
		return err
	}
	waitFor(t, "the admin reaching the box", reach)

	moved := strings.ReplaceAll(doc, "192.168.1.", "192.168.2.")
	path := filepath.Join(b.dir, "moved.yaml")
	if err := os.WriteFile(path, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := mfapply(t, "", "--data", b.data, "apply", "-f", path, "--yes", "--confirm-within", "4s")
	if code != 0 {
		t.Fatalf("mfapply apply --confirm-within: exit %d\n%s%s", code, out, errOut)
	}
	waitFor(t, "the LAN moved to 192.168.2.1", func() error {
		if got := b.addr4(t, b.name, "br-lan"); got.String() != "192.168.2.1/24" {
			return fmt.Errorf("br-lan has %v", got)
		}
		return nil
	})
	if reach() == nil {
		t.Fatal("the admin still reaches the box at 192.168.1.1")
	}
	// No confirmation: the previous version comes back by itself.
	waitFor(t, "the LAN back at 192.168.1.1", func() error {
		if got := b.addr4(t, b.name, "br-lan"); got.String() != "192.168.1.1/24" {
			return fmt.Errorf("br-lan has %v", got)
		}
		return nil
	})
	waitFor(t, "the admin reaching the box again", reach)
	h := waitVersions(t, b.data, 3)
	if h[len(h)-1].Origin != "confirm-timeout" {
		t.Errorf("version 3's origin %q, want confirm-timeout", h[len(h)-1].Origin)
	}
}
