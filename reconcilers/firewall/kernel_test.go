package firewall

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/hw/hwtest"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
	"mailfountain.dev/mailfountain/runtime/testenv"
	"mailfountain.dev/mailfountain/schema"
)

// The tests below run inside a virtual box (hwtest: this test binary run
// again in a network namespace of its own, deleted after), against the
// kernel's nftables, with nft as the independent reader.

func TestMain(m *testing.M) { os.Exit(hwtest.Main(m)) }

// inBox returns the box the test runs in, with nft; it refuses to go on
// unless this process is inside the box's namespace, never the host's.
func inBox(t *testing.T) (*hw.Box, string) {
	t.Helper()
	box := hwtest.Box(t)
	if in, err := hw.InNamespace(box.Virtual); err != nil || !in {
		t.Fatalf("not inside the virtual box %s (%v): nothing here may touch nftables", box.Virtual, err)
	}
	nft := testenv.NeedTool(t, "nft")
	// Each test starts without our table, and leaves none.
	exec.Command(nft, "delete", "table", "inet", TableName).Run()
	t.Cleanup(func() { exec.Command(nft, "delete", "table", "inet", TableName).Run() })
	return box, nft
}

// reconcile runs Observe, Plan and Apply as the engine does, and returns
// the plan's lines.
func reconcile(t *testing.T, r *Reconciler, st *schema.State) []string {
	t.Helper()
	ctx := context.Background()
	l, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(ctx, l, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

// plan observes and plans without applying.
func plan(t *testing.T, r *Reconciler, st *schema.State) []string {
	t.Helper()
	ctx := context.Background()
	l, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(ctx, l, st)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

func generation(t *testing.T) uint32 {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := readGen(c)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func listed(t *testing.T) []LiveRule {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rules, _, err := dumpRules(c)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

var threeForwards = router("dhcp",
	fwd("tcp", 8080, "192.168.1.20", 80),
	fwd("udp", 5353, "192.168.1.21", 53),
	fwd("all", 3000, "192.168.1.22", 3001))

// TestApply: the table as nft lists it is the rendered ruleset: its
// chains with their hooks and policies, every rule with its comment; and
// the same rules as `nft -f` makes of the ruleset's nft text.
func TestApply(t *testing.T) {
	box, nft := inBox(t)
	m := &metricstest.Counts{}
	r := New(Config{WAN: box.Profile.WAN, Metrics: m})
	rs, err := Render(InputOf(threeForwards, box.Profile.WAN))
	if err != nil {
		t.Fatal(err)
	}
	got := reconcile(t, r, threeForwards)
	if want := []string{"+ firewall table inet mailfountain (router mode, 3 forwards: 32 rules)"}; !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}

	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(hwtest.Run(t, nft, "-j", "list", "table", "inet", TableName)), &doc); err != nil {
		t.Fatal(err)
	}
	type chain struct {
		Type, Hook, Policy string
		Prio               int
	}
	type rule struct {
		Chain, Comment string
		Expr           []map[string]json.RawMessage
	}
	chains := map[string]chain{}
	comments := map[string][]string{}
	var dnat string
	for _, o := range doc.Nftables {
		if raw, ok := o["chain"]; ok {
			var c struct {
				Name string
				chain
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			chains[c.Name] = c.chain
		}
		if raw, ok := o["rule"]; ok {
			var x rule
			if err := json.Unmarshal(raw, &x); err != nil {
				t.Fatal(err)
			}
			comments[x.Chain] = append(comments[x.Chain], x.Comment)
			for _, e := range x.Expr {
				if d, ok := e["dnat"]; ok && strings.Contains(x.Comment, "dnat tcp/8080") {
					dnat = string(d)
				}
			}
		}
	}
	wantChains := map[string]chain{
		"prerouting":  {"nat", "prerouting", "accept", -100},
		"postrouting": {"nat", "postrouting", "accept", 100},
		"input":       {"filter", "input", "drop", 0},
		"forward":     {"filter", "forward", "drop", 0},
	}
	if fmt.Sprint(chains) != fmt.Sprint(wantChains) {
		t.Errorf("chains %+v, want %+v", chains, wantChains)
	}
	wantComments := map[string][]string{}
	for _, x := range rs.Rules {
		wantComments[x.Chain] = append(wantComments[x.Chain], x.Key)
	}
	for c, want := range wantComments {
		if !slices.Equal(comments[c], want) {
			t.Errorf("chain %s: comments\n%q\nwant\n%q", c, comments[c], want)
		}
	}
	var d struct {
		Family, Addr string
		Port         int
	}
	if err := json.Unmarshal([]byte(dnat), &d); err != nil || d.Family != "ip" || d.Addr != "192.168.1.20" || d.Port != 80 {
		t.Errorf("the DNAT of tcp/8080: %s (%v)", dnat, err)
	}
	if c := m.Counts(); c["firewall applied"] != 1 || c["firewall rules added"] != len(rs.Rules) || c["firewall drift corrected"] != 0 {
		t.Errorf("metrics %v", c)
	}

	// The same rules as nft makes of the ruleset's text (what the
	// benchmark loads), byte for byte as nft lists them.
	ours := hwtest.Run(t, nft, "list", "table", "inet", TableName)
	file := filepath.Join(t.TempDir(), "table.nft")
	if err := os.WriteFile(file, []byte(rs.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	hwtest.Run(t, nft, "-f", file)
	if theirs := hwtest.Run(t, nft, "list", "table", "inet", TableName); theirs != ours {
		t.Errorf("nft -f of the text lists\n%s\nthe reconciler's table\n%s", theirs, ours)
	}
}

// TestIdempotent: a second reconcile sends nothing and reads nothing but
// the generation; a new reconciler lists the table and finds it in sync.
func TestIdempotent(t *testing.T) {
	box, _ := inBox(t)
	r := New(Config{WAN: box.Profile.WAN})
	reconcile(t, r, threeForwards)
	before, gen := r.Stats(), generation(t)
	for range 3 {
		if got := reconcile(t, r, threeForwards); len(got) != 0 {
			t.Fatalf("second reconcile planned %q", got)
		}
	}
	if after := r.Stats(); after != before {
		t.Errorf("stats %+v after, %+v before: something was sent or listed", after, before)
	}
	if g := generation(t); g != gen {
		t.Errorf("generation %d after, %d before: the ruleset changed", g, gen)
	}

	fresh := New(Config{WAN: box.Profile.WAN})
	if got := reconcile(t, fresh, threeForwards); len(got) != 0 {
		t.Fatalf("a new reconciler planned %q", got)
	}
	if s := fresh.Stats(); s.Dumps != 1 || s.Batches != 0 {
		t.Errorf("a new reconciler: %+v, want one listing and no batch", s)
	}
	if g := generation(t); g != gen {
		t.Errorf("generation %d after, %d before: the ruleset changed", g, gen)
	}
}

// TestIncremental: one forward added or removed on top of 100 is one
// batch of its two rules; the other rules keep their handles.
func TestIncremental(t *testing.T) {
	box, _ := inBox(t)
	var fs []schema.Forward
	for i := range 101 {
		fs = append(fs, fwd("tcp", 10000+i, fmt.Sprintf("192.168.1.%d", 10+i%200), 20000+i))
	}
	r := New(Config{WAN: box.Profile.WAN})
	reconcile(t, r, router("dhcp", fs[:100]...))
	handles := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, x := range listed(t) {
			m[x.Key] = x.Handle
		}
		return m
	}
	steps := []struct {
		name string
		fs   []schema.Forward
		want string
	}{
		{"one more", fs, "+ firewall forward tcp/10100 (→ 192.168.1.110:20100)"},
		// Its rules were added by the last apply: their handles are read
		// when they are deleted.
		{"the new one removed", fs[:100], "- firewall forward tcp/10100"},
		{"an old one removed", slices.Delete(slices.Clone(fs[:100]), 50, 51), "- firewall forward tcp/10050"},
	}
	for _, s := range steps {
		before, hs := r.Stats(), handles()
		got := reconcile(t, r, router("dhcp", s.fs...))
		if !slices.Equal(got, []string{s.want}) {
			t.Fatalf("%s: plan %q, want %q", s.name, got, s.want)
		}
		after := r.Stats()
		if after.Batches != before.Batches+1 || after.Messages != before.Messages+2 {
			t.Errorf("%s: %d batches of %d messages, want 1 of 2", s.name, after.Batches-before.Batches, after.Messages-before.Messages)
		}
		kept := 0
		for k, h := range handles() {
			if old, ok := hs[k]; ok {
				if old != h {
					t.Errorf("%s: rule %q has handle %d, had %d: the table was rebuilt", s.name, k, h, old)
				}
				kept++
			}
		}
		if want := len(hs) - 2*strings.Count(s.want, "- "); kept != want {
			t.Errorf("%s: %d rules kept, want %d", s.name, kept, want)
		}
		if got := plan(t, New(Config{WAN: box.Profile.WAN}), router("dhcp", s.fs...)); len(got) != 0 {
			t.Errorf("%s: a new reconciler plans %q", s.name, got)
		}
	}
}

// TestDrift: what is changed by hand in our table is found by the next
// reconcile and put right; the other tables are never touched.
func TestDrift(t *testing.T) {
	box, nft := inBox(t)
	others := "table inet fwtest-other {\n\tchain in {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 4242 counter accept\n\t}\n}\n" +
		"table ip fwtest-nat {\n\tchain post {\n\t\ttype nat hook postrouting priority 110; policy accept;\n\t\toifname \"wan\" masquerade\n\t}\n}\n"
	file := filepath.Join(t.TempDir(), "others.nft")
	if err := os.WriteFile(file, []byte(others), 0o600); err != nil {
		t.Fatal(err)
	}
	hwtest.Run(t, nft, "-f", file)
	t.Cleanup(func() {
		exec.Command(nft, "delete", "table", "inet", "fwtest-other").Run()
		exec.Command(nft, "delete", "table", "ip", "fwtest-nat").Run()
	})
	listOthers := func() string {
		return hwtest.Run(t, nft, "list", "table", "inet", "fwtest-other") + hwtest.Run(t, nft, "list", "table", "ip", "fwtest-nat")
	}
	othersBefore := listOthers()
	handleOf := func(part string) string {
		for _, x := range listed(t) {
			if strings.Contains(x.Key, part) {
				return fmt.Sprint(x.Handle)
			}
		}
		t.Fatalf("no rule %q", part)
		return ""
	}
	st := router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80))

	tests := []struct {
		name  string
		hand  func() // the change made by hand
		want  []string
		drift int
	}{
		{
			name: "table flushed",
			hand: func() { hwtest.Run(t, nft, "flush", "table", "inet", TableName) },
			want: []string{
				"~ firewall box (24 rules deleted by hand: added again)",
				"~ firewall forward tcp/8080 (→ 192.168.1.20:80; 2 rules deleted by hand: added again)",
			},
			drift: 26,
		},
		{
			name:  "a rule added",
			hand:  func() { hwtest.Run(t, nft, "add", "rule", "inet", TableName, "input", "tcp", "dport", "22", "accept") },
			want:  []string{"- firewall rule input/%s (added by hand, no comment)"},
			drift: 1,
		},
		{
			name: "a rule deleted",
			hand: func() {
				hwtest.Run(t, nft, "delete", "rule", "inet", TableName, "prerouting", "handle", handleOf("dnat tcp/8080"))
			},
			want:  []string{"~ firewall forward tcp/8080 (→ 192.168.1.20:80; 1 rule deleted by hand: added again)"},
			drift: 1,
		},
		{
			name:  "the table deleted",
			hand:  func() { hwtest.Run(t, nft, "delete", "table", "inet", TableName) },
			want:  []string{"~ firewall table inet mailfountain (deleted by hand: made again, router mode, 1 forward: 26 rules)"},
			drift: 1,
		},
		{
			name:  "a policy changed",
			hand:  func() { hwtest.Run(t, nft, "chain", "inet", TableName, "forward", "{ policy accept; }") },
			want:  []string{"~ firewall table inet mailfountain (rebuilt whole: chain forward changed (changed by hand); router mode, 1 forward: 26 rules)"},
			drift: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &metricstest.Counts{}
			r := New(Config{WAN: box.Profile.WAN, Metrics: m})
			reconcile(t, r, st)
			if got := plan(t, r, st); len(got) != 0 {
				t.Fatalf("in sync, yet the plan is %q", got)
			}
			var added string
			if tc.name == "a rule added" {
				tc.hand()
				for _, x := range listed(t) {
					if x.Key == "" {
						added = fmt.Sprint(x.Handle)
					}
				}
			} else {
				tc.hand()
			}
			want := slices.Clone(tc.want)
			for i := range want {
				if strings.Contains(want[i], "%s") {
					want[i] = fmt.Sprintf(want[i], added)
				}
			}
			if got := reconcile(t, r, st); !slices.Equal(got, want) {
				t.Fatalf("after the change by hand, plan\n%q\nwant\n%q", got, want)
			}
			if c := m.Counts()["firewall drift corrected"]; c != tc.drift {
				t.Errorf("drift corrected %d, want %d", c, tc.drift)
			}
			if got := plan(t, New(Config{WAN: box.Profile.WAN}), st); len(got) != 0 {
				t.Errorf("after the correction, a new reconciler plans %q", got)
			}
			if got := listOthers(); got != othersBefore {
				t.Errorf("the other tables changed:\n%s\nwere\n%s", got, othersBefore)
			}
		})
	}
}

// TestServerMode: switching to server mode leaves the input chain open
// to the LAN and loopback only, without NAT or forwarding, and back.
func TestServerMode(t *testing.T) {
	box, nft := inBox(t)
	r := New(Config{WAN: box.Profile.WAN})
	reconcile(t, r, threeForwards)
	server := &schema.State{Network: schema.Network{Mode: "server", WAN: schema.WAN{Method: "static"}}}
	got := reconcile(t, r, server)
	if want := []string{"~ firewall table inet mailfountain (rebuilt whole: chain prerouting not wanted, chain postrouting not wanted; server mode, 0 forwards: 4 rules)"}; !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}
	list := hwtest.Run(t, nft, "list", "table", "inet", TableName)
	for _, absent := range []string{"nat", "masquerade", "dnat", `"wan"`} {
		if strings.Contains(list, absent) {
			t.Errorf("server mode's table has %q:\n%s", absent, list)
		}
	}
	if got := reconcile(t, r, threeForwards); len(got) != 1 || !strings.Contains(got[0], "router mode, 3 forwards") {
		t.Fatalf("back to router mode: plan %q", got)
	}
}

// inNamespace runs f on a thread of its own moved into the named
// namespace (a peer of the box): the sockets f opens live there. When
// the thread cannot be moved back it is never reused (its goroutine ends
// locked).
func inNamespace(t *testing.T, name string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			done <- err
			return
		}
		err = f()
		if serr := netns.Set(orig); serr != nil {
			done <- fmt.Errorf("back from %s: %w", name, serr)
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("in %s: %v", name, err)
	}
}

// serve answers every connection on ln with prefix and the client's
// address, until the test ends.
func serve(t *testing.T, ln net.Listener, prefix string) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", prefix, host)
			c.Close()
		}
	}()
}

// dialFrom connects from namespace ns (the box's own when "") to addr and
// returns the server's line, or the error.
func dialFrom(t *testing.T, ns, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	var conn net.Conn
	var err error
	dial := func() error {
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return nil
	}
	if ns == "" {
		dial()
	} else {
		inNamespace(t, ns, dial)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestTraffic sends TCP through the box: a port forward carries a WAN
// peer's connection to a server of the LAN; a LAN peer reaches the WAN
// peer through NAT; the WAN peer reaches the box's services and nothing
// else, and never the LAN straight.
func TestTraffic(t *testing.T) {
	box, _ := inBox(t)
	ip := testenv.NeedTool(t, "ip")
	wanPeer, lanPeer := hwtest.Peer(t, "wan"), hwtest.Peer(t, "lan1")
	const (
		boxWAN, peerWAN = "192.0.2.1", "192.0.2.2"
		boxLAN, peerLAN = "192.168.1.1", "192.168.1.20"
	)
	// The least addressing (the network reconciler's job on a box): the
	// LAN ports in the bridge, an address each side of each cable, the
	// LAN peer's route through the box, and the WAN peer's to the LAN
	// (as a hostile upstream could have), and forwarding on.
	if _, err := net.InterfaceByName(hw.LANBridge); err != nil {
		hwtest.Run(t, ip, "link", "add", hw.LANBridge, "type", "bridge")
	}
	for _, lan := range box.Profile.LAN {
		hwtest.Run(t, ip, "link", "set", lan, "master", hw.LANBridge, "up")
	}
	hwtest.Run(t, ip, "link", "set", hw.LANBridge, "up")
	hwtest.Run(t, ip, "link", "set", box.Profile.WAN, "up")
	hwtest.Run(t, ip, "addr", "replace", boxLAN+"/24", "dev", hw.LANBridge)
	hwtest.Run(t, ip, "addr", "replace", boxWAN+"/24", "dev", box.Profile.WAN)
	hwtest.Run(t, ip, "-n", wanPeer, "addr", "replace", peerWAN+"/24", "dev", hw.PeerPort)
	hwtest.Run(t, ip, "-n", wanPeer, "route", "replace", "192.168.1.0/24", "via", boxWAN)
	hwtest.Run(t, ip, "-n", lanPeer, "addr", "replace", peerLAN+"/24", "dev", hw.PeerPort)
	hwtest.Run(t, ip, "-n", lanPeer, "route", "replace", "default", "via", boxLAN)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}

	var lanLn, wanLn net.Listener
	inNamespace(t, lanPeer, func() (err error) { lanLn, err = net.Listen("tcp", ":80"); return err })
	serve(t, lanLn, "lan")
	inNamespace(t, wanPeer, func() (err error) { wanLn, err = net.Listen("tcp", peerWAN+":9000"); return err })
	serve(t, wanLn, "wan")
	for _, port := range []string{"25", "8081"} {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ln, "box")
	}

	const short = 1500 * time.Millisecond
	// Without the firewall the box's port 8081 and the LAN host are
	// open to the WAN: what the firewall must close.
	for _, addr := range []string{boxWAN + ":8081", peerLAN + ":80"} {
		if _, err := dialFrom(t, wanPeer, addr, 5*time.Second); err != nil {
			t.Fatalf("before the firewall, the WAN peer cannot reach %s: %v (the setup is wrong)", addr, err)
		}
	}

	r := New(Config{WAN: box.Profile.WAN})
	reconcile(t, r, router("static", fwd("tcp", 8080, peerLAN, 80)))

	tests := []struct {
		name, from, addr, want string
	}{
		{"port forward", wanPeer, boxWAN + ":8080", "lan " + peerWAN},
		{"NAT out of the WAN", lanPeer, peerWAN + ":9000", "wan " + boxWAN},
		{"the box's SMTP from the WAN", wanPeer, boxWAN + ":25", "box " + peerWAN},
		{"the box from the LAN", lanPeer, boxLAN + ":8081", "box " + peerLAN},
		{"a port the box does not serve", wanPeer, boxWAN + ":8081", ""},
		{"the LAN host straight from the WAN", wanPeer, peerLAN + ":80", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 5 * time.Second
			if tc.want == "" {
				timeout = short
			}
			got, err := dialFrom(t, tc.from, tc.addr, timeout)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("%s reached %s: %q", tc.from, tc.addr, got)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("%s to %s: %q, %v; want %q", tc.from, tc.addr, got, err, tc.want)
			}
		})
	}
}

// TestSpoofedFromTheWAN: a UDP datagram from the WAN that claims a LAN
// source (the DNS server answers the LAN's addresses as a resolver) never
// reaches the box's service; the same from the WAN peer's own address
// does.
func TestSpoofedFromTheWAN(t *testing.T) {
	box, _ := inBox(t)
	ip := testenv.NeedTool(t, "ip")
	wanPeer := hwtest.Peer(t, "wan")
	const boxWAN, peerWAN, spoofed = "192.0.2.1", "192.0.2.2", "192.168.1.20"
	if _, err := net.InterfaceByName(hw.LANBridge); err != nil {
		hwtest.Run(t, ip, "link", "add", hw.LANBridge, "type", "bridge")
	}
	hwtest.Run(t, ip, "link", "set", hw.LANBridge, "up")
	hwtest.Run(t, ip, "link", "set", box.Profile.WAN, "up")
	hwtest.Run(t, ip, "addr", "replace", "192.168.1.1/24", "dev", hw.LANBridge)
	hwtest.Run(t, ip, "addr", "replace", boxWAN+"/24", "dev", box.Profile.WAN)
	hwtest.Run(t, ip, "-n", wanPeer, "addr", "replace", peerWAN+"/24", "dev", hw.PeerPort)

	r := New(Config{WAN: box.Profile.WAN})
	reconcile(t, r, router("static"))
	pc, err := net.ListenPacket("udp4", boxWAN+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan string, 10)
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- from.String() + " " + string(buf[:n])
		}
	}()
	send := func(src string, payload string) {
		t.Helper()
		inNamespace(t, wanPeer, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			s4, d4 := netip.MustParseAddr(src).As4(), netip.MustParseAddr(boxWAN).As4()
			// IPv4 (the kernel fills in the length and checksum), then UDP
			// without a checksum.
			pkt := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, unix.IPPROTO_UDP, 0, 0}
			pkt = append(append(pkt, s4[:]...), d4[:]...)
			udp := binary.BigEndian.AppendUint16(nil, 40000)
			udp = binary.BigEndian.AppendUint16(udp, 53)
			udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
			udp = append(udp, 0, 0)
			pkt = append(append(pkt, udp...), payload...)
			return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: d4})
		})
	}
	send(spoofed, "forged")
	send(peerWAN, "true")
	select {
	case g := <-got:
		if g != peerWAN+":40000 true" {
			t.Fatalf("the box's UDP/53 got %q first, want the WAN peer's own datagram", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the WAN peer's own datagram did not arrive (the test proves nothing)")
	}
	select {
	case g := <-got:
		t.Errorf("the box's UDP/53 also got %q", g)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestWatch: a change by hand in our table notifies; a change of another
// table, or the reconciler's own apply, does not; the watch ends with its
// context.
func TestWatch(t *testing.T) {
	box, nft := inBox(t)
	r := New(Config{WAN: box.Profile.WAN})
	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, func() { notified <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	// The subscription is made when the watch starts: a change by hand
	// until one notifies.
	expect := func(what string, within time.Duration) bool {
		select {
		case <-notified:
			return true
		case <-time.After(within):
			return false
		}
	}
	quiet := func(what string) {
		t.Helper()
		if expect(what, 300*time.Millisecond) {
			t.Errorf("%s notified", what)
		}
	}

	reconcile(t, r, threeForwards)
	// The subscription may not have been made before this apply: drain.
	for expect("", 300*time.Millisecond) {
	}
	hwtest.Run(t, nft, "add", "table", "inet", "fwtest-watch")
	t.Cleanup(func() { exec.Command(nft, "delete", "table", "inet", "fwtest-watch").Run() })
	hwtest.Run(t, nft, "add", "chain", "inet", "fwtest-watch", "c")
	quiet("another table's change")

	reconcile(t, r, router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80)))
	quiet("the reconciler's own apply")

	hwtest.Run(t, nft, "flush", "table", "inet", TableName)
	if !expect("flush", 5*time.Second) {
		t.Fatal("a flush by hand did not notify")
	}
	if got := reconcile(t, r, router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80))); len(got) == 0 {
		t.Fatal("notified, yet nothing to correct")
	}
	quiet("the correction")
	hwtest.Run(t, nft, "add", "rule", "inet", TableName, "input", "tcp", "dport", "22", "accept")
	if !expect("a rule added", 5*time.Second) {
		t.Fatal("a rule added by hand did not notify")
	}
}
