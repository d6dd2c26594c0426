package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
	"mailfountain.dev/mailfountain/schema/schematest"
)

// The tests of this file run in a box's network namespace: the ports
// wan, lan1 and lan2, each a veth whose peer is eth0 of a namespace of
// its own (the upstream router, the devices of LAN1 and LAN2).

// ip runs ip in the current namespace (the box's), or with -n in a peer.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// layoutNow is the box's links as ip -j shows them, one line each, then
// the default route and forwarding: what the tests compare.
func layoutNow(t *testing.T) string {
	t.Helper()
	var links []struct {
		Name   string   `json:"ifname"`
		Flags  []string `json:"flags"`
		Master string   `json:"master"`
	}
	if err := json.Unmarshal([]byte(ip(t, "-j", "link", "show")), &links); err != nil {
		t.Fatal(err)
	}
	var addrs []struct {
		Name string `json:"ifname"`
		Info []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ip(t, "-j", "-4", "addr", "show")), &addrs); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range links {
		if l.Name == "lo" {
			continue
		}
		s := l.Name + ":"
		if slices.Contains(l.Flags, "UP") {
			s += " up"
		} else {
			s += " down"
		}
		if l.Master != "" {
			s += " in " + l.Master
		}
		for _, a := range addrs {
			if a.Name == l.Name {
				for _, i := range a.Info {
					s += fmt.Sprintf(" %s/%d", i.Local, i.PrefixLen)
				}
			}
		}
		lines = append(lines, s)
	}
	slices.Sort(lines)
	var routes []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	if err := json.Unmarshal([]byte(ip(t, "-j", "-4", "route", "show", "default")), &routes); err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		lines = append(lines, "default via "+r.Gateway+" on "+r.Dev)
	}
	fw := "forwarding"
	for _, f := range forwardFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fw += " " + strings.TrimSpace(string(b))
	}
	return strings.Join(append(lines, fw), "\n")
}

// resetBox puts the box's ports back as the namespace made them: no
// bridge, no address, down, forwarding off.
func resetBox(t *testing.T, p *Ports) {
	t.Helper()
	exec.Command("ip", "link", "del", Bridge).Run() // none, the first time
	for _, n := range p.all() {
		ip(t, "addr", "flush", "dev", n)
		ip(t, "link", "set", n, "down")
	}
	for _, f := range forwardFiles {
		if err := os.WriteFile(f, []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// boxEngine is an engine over the network reconciler on the box's ports
// and a reader of its facts.
type boxEngine struct {
	e   *reconcilers.Engine
	net *Reconciler
	rd  *reader
	st  *store.Store
}

func newBoxEngine(t *testing.T, cfg Config) *boxEngine {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if cfg.Ports == nil {
		cfg.Ports = boxPorts(t)
	}
	resetBox(t, cfg.Ports)
	n := New(st, SystemHost(), cfg, nil)
	rd := &reader{}
	e, err := reconcilers.Build(reconcilers.Config{}, reconcilers.Spec{Reconciler: rd}, reconcilers.Spec{Reconciler: n})
	if err != nil {
		t.Fatal(err)
	}
	return &boxEngine{e: e, net: n, rd: rd, st: st}
}

// apply plans doc and applies it; it returns the plan's changes.
func (b *boxEngine) apply(t *testing.T, doc *schema.State) []string {
	t.Helper()
	ctx := context.Background()
	p, err := b.e.Plan(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, s := range p.Steps {
		for _, c := range s.Changes {
			shown = append(shown, c.String())
		}
	}
	if _, err := b.e.Apply(ctx, p, nil); err != nil {
		t.Fatalf("apply %q: %v", shown, err)
	}
	return shown
}

const (
	routerStatic = "system: {model: virtual}\nnetwork: {wan: {method: static, address: 203.0.113.5/24, gateway: 203.0.113.1, dns: [203.0.113.53]}}\n"
	serverStatic = "system: {model: virtual}\nnetwork: {mode: server, wan: {method: static, address: 192.168.10.5/24, gateway: 192.168.10.1, dns: [192.168.10.1]}, dhcp: {enabled: false}}\n"
)

const (
	routerLayout = `br-lan: up 192.168.1.1/24
lan1: up in br-lan
lan2: up in br-lan
wan: up 203.0.113.5/24
default via 203.0.113.1 on wan
forwarding 1 1`
	serverLayout = `br-lan: up 192.168.10.5/24
lan1: up in br-lan
lan2: up in br-lan
wan: up in br-lan
default via 192.168.10.1 on br-lan
forwarding 0 0`
)

// TestRouterServerRouter applies router mode, server mode and router
// mode again on the box's ports: each layout as ip shows it, the second
// apply of each document making no netlink change, and what was added by
// hand on a port left alone.
func TestRouterServerRouter(t *testing.T) {
	b := newBoxEngine(t, Config{})
	router, server := schematest.Load(t, routerStatic), schematest.Load(t, serverStatic)

	plan := b.apply(t, router)
	want := []string{
		"~ network settings (upstream resolvers the host's → [203.0.113.53], lan address none → 192.168.1.1/24)",
		"+ bridge br-lan",
		"~ link lan1 (into br-lan)", "~ link lan2 (into br-lan)",
		"~ link wan (up)", "~ link lan1 (up)", "~ link lan2 (up)", "~ link br-lan (up)",
		"+ address 192.168.1.1/24 on br-lan", "+ address 203.0.113.5/24 on wan",
		"+ default route via 203.0.113.1 on wan",
		"~ ip forwarding (on)",
	}
	if !slices.Equal(plan, want) {
		t.Errorf("first plan\n%q, want\n%q", plan, want)
	}
	if got := layoutNow(t); got != routerLayout {
		t.Fatalf("router mode:\n%s\nwant\n%s", got, routerLayout)
	}
	if n := b.net.Changes(); n != 11 {
		t.Errorf("%d netlink changes, want 11", n)
	}

	// An address added by hand on a LAN port: not the box's.
	ip(t, "addr", "add", "10.77.0.1/24", "dev", "lan1")

	steps := []struct {
		name   string
		doc    *schema.State
		layout string
	}{
		{"router again", router, routerLayout},
		{"server", server, serverLayout},
		{"server again", server, serverLayout},
		{"router after server", router, routerLayout},
		{"router once more", router, routerLayout},
	}
	for _, s := range steps {
		before := b.net.Changes()
		plan := b.apply(t, s.doc)
		got := layoutNow(t)
		want := strings.Replace(s.layout, "lan1: up in br-lan", "lan1: up in br-lan 10.77.0.1/24", 1)
		if got != want {
			t.Errorf("%s: plan %q\n%s\nwant\n%s", s.name, plan, got, want)
		}
		if strings.HasSuffix(s.name, "again") || strings.HasSuffix(s.name, "more") {
			if len(plan) != 0 || b.net.Changes() != before {
				t.Errorf("%s: plan %q, %d netlink changes: want none", s.name, plan, b.net.Changes()-before)
			}
		} else if b.net.Changes() == before {
			t.Errorf("%s: no netlink change", s.name)
		}
	}
}

// TestDriftCorrected: an address deleted by hand, a port set down, a
// port taken out of the bridge and the default route deleted are put
// back by the next reconcile, and only they.
func TestDriftCorrected(t *testing.T) {
	met := &countMetrics{}
	b := newBoxEngine(t, Config{Metrics: met})
	router := schematest.Load(t, routerStatic)
	b.apply(t, router)
	if layoutNow(t) != routerLayout {
		t.Fatalf("router mode:\n%s", layoutNow(t))
	}
	ip(t, "addr", "del", "192.168.1.1/24", "dev", "br-lan")
	ip(t, "link", "set", "lan2", "down")
	ip(t, "link", "set", "lan1", "nomaster")
	ip(t, "route", "del", "default")
	before := b.net.Changes()
	plan := b.apply(t, router)
	want := []string{"~ link lan1 (into br-lan)", "~ link lan2 (up)", "+ address 192.168.1.1/24 on br-lan", "+ default route via 203.0.113.1 on wan"}
	if !slices.Equal(plan, want) {
		t.Errorf("plan after drift\n%q, want\n%q", plan, want)
	}
	if got := layoutNow(t); got != routerLayout {
		t.Errorf("after the correction:\n%s", got)
	}
	if d := b.net.Changes() - before; d != 4 || met.drift.Load() != 4 {
		t.Errorf("%d netlink changes, %d counted as drift; want 4, 4", d, met.drift.Load())
	}
}

// TestWatchCorrectsDrift: with Watch running, as the daemon runs it, a
// port set down and an address deleted by hand are put back without an
// edit: the netlink event triggers the reconcile.
func TestWatchCorrectsDrift(t *testing.T) {
	b := newBoxEngine(t, Config{})
	router := schematest.Load(t, routerStatic)
	b.apply(t, router)
	stop := b.watch(t, router, time.Hour) // no poll: the events alone
	defer stop()
	ip(t, "link", "set", "lan2", "down")
	ip(t, "addr", "del", "203.0.113.5/24", "dev", "wan")
	waitFor(t, 20*time.Second, "the layout back", func() bool { return layoutNow(t) == routerLayout })
}

// watch runs the reconciler's Watch; each notification plans and
// applies doc, as the daemon's triggers do.
func (b *boxEngine) watch(t *testing.T, doc *schema.State, poll time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	poke := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.net.watchBox(ctx, poll, func() {
			select {
			case poke <- struct{}{}:
			default:
			}
		}); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-poke:
			}
			p, err := b.e.Plan(ctx, doc)
			if err == nil && !p.Empty() {
				_, err = b.e.Apply(ctx, p, nil)
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("reconcile: %v", err)
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\n%s", what, d, layoutNow(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type countMetrics struct{ changes, drift atomic.Int64 }

func (m *countMetrics) NetlinkChanges(n int)        { m.changes.Add(int64(n)) }
func (m *countMetrics) NetlinkDriftCorrected(n int) { m.drift.Add(int64(n)) }

// fakeLink is a WAN link whose state the test sets (PPPoE cannot come up
// on this kernel: runtime/pppoe's tests say what is proven where).
type fakeLink struct {
	mu      sync.Mutex
	st      wanlink.State
	changed chan struct{}
	running atomic.Bool
}

func (f *fakeLink) Run(ctx context.Context) error {
	f.running.Store(true)
	<-ctx.Done()
	f.running.Store(false)
	return nil
}

func (f *fakeLink) State() wanlink.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeLink) Changed() <-chan struct{} { return f.changed }

func (f *fakeLink) set(st wanlink.State) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.changed <- struct{}{}
}

// TestPPPoELink: router mode with a PPPoE WAN runs the link that
// Config.NewPPPoE makes from the document's credentials; without a watch
// loop (mfapply) the link is recorded once, not planned again; with it,
// the session's address (ppp0) becomes the public address and its DNS
// servers the upstream resolvers, and the WAN port gets no address.
func TestPPPoELink(t *testing.T) {
	link := &fakeLink{changed: make(chan struct{}, 1)}
	var got schema.WAN
	b := newBoxEngine(t, Config{NewPPPoE: func(iface string, wan schema.WAN) (WANLink, error) {
		if iface != "wan" {
			t.Errorf("pppoe on %s", iface)
		}
		got = wan
		return link, nil
	}})
	doc := schematest.Load(t, "system: {model: virtual}\nnetwork: {wan: {method: pppoe, username: rene@fai.example, password_file: /etc/mailfountain/pppoe}}\n")
	plan := b.apply(t, doc)
	if !slices.Contains(plan, "~ wan link (pppoe on wan as rene@fai.example file:/etc/mailfountain/pppoe)") {
		t.Errorf("plan %q", plan)
	}
	if got.Username != "rene@fai.example" || got.PasswordFile != "/etc/mailfountain/pppoe" {
		t.Errorf("the link was made with %+v", got)
	}
	if plan := b.apply(t, doc); len(plan) != 0 {
		t.Errorf("second plan without a watch loop: %q", plan)
	}

	stop := b.watch(t, doc, time.Hour)
	defer stop()
	waitFor(t, 10*time.Second, "the link running", link.running.Load)
	link.set(wanlink.State{Up: true, Address: netip.MustParsePrefix("198.51.100.7/32"), Gateway: netip.MustParseAddr("198.51.100.1"),
		DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}, Interface: "ppp0"})
	waitFor(t, 10*time.Second, "the session's facts", func() bool {
		f := b.rd.facts()
		return f["public"] == "198.51.100.7" && f["upstreams"] == "[198.51.100.53]"
	})
	if l := layoutNow(t); !strings.Contains(l, "\nwan: up\n") {
		t.Errorf("the WAN port with PPPoE:\n%s", l)
	}
}

// TestWANStatus: what the daemon's status shows of the WAN: nothing
// before an apply; the static address applied, in router mode, and
// server mode's on the bridge; the same from a reconciler that starts
// on the applied store (a daemon restarted).
func TestWANStatus(t *testing.T) {
	b := newBoxEngine(t, Config{})
	if st, ok := b.net.WANStatus(); ok {
		t.Errorf("before any apply: %+v", st)
	}
	now := time.Now()
	for _, c := range []struct{ doc, want string }{
		{routerStatic, "static on wan: 203.0.113.5/24 via 203.0.113.1, DNS 203.0.113.53"},
		{serverStatic, "server mode on br-lan: 192.168.10.5/24 via 192.168.10.1, DNS 192.168.10.1"},
		{routerStatic, "static on wan: 203.0.113.5/24 via 203.0.113.1, DNS 203.0.113.53"},
	} {
		b.apply(t, schematest.Load(t, c.doc))
		st, ok := b.net.WANStatus()
		if got := st.Describe(now); !ok || got != c.want {
			t.Errorf("status %q (%v), want %q", got, ok, c.want)
		}
	}
	again := New(b.st, SystemHost(), Config{Ports: b.net.ports}, nil)
	if _, err := again.Observe(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, ok := again.WANStatus()
	if want := "static on wan: 203.0.113.5/24 via 203.0.113.1, DNS 203.0.113.53"; !ok || st.Describe(now) != want {
		t.Errorf("after a restart: %q (%v), want %q", st.Describe(now), ok, want)
	}
}

// TestPPPoEStatus: the status of a PPPoE WAN is its link's: the user
// name, the session when up, why it is down and the next try when not.
// Why and when move without a change signalled and plan nothing: the
// live state's fingerprint stays.
func TestPPPoEStatus(t *testing.T) {
	link := &fakeLink{changed: make(chan struct{}, 1)}
	b := newBoxEngine(t, Config{NewPPPoE: func(string, schema.WAN) (WANLink, error) { return link, nil }})
	doc := schematest.Load(t, "system: {model: virtual}\nnetwork: {wan: {method: pppoe, username: fti/abc@fai, password: secret}}\n")
	stop := b.watch(t, doc, time.Hour)
	defer stop()
	waitFor(t, 10*time.Second, "the link running", link.running.Load)
	now := time.Date(2026, 12, 4, 16, 16, 8, 0, time.Local)
	status := func() string {
		st, ok := b.net.WANStatus()
		if !ok {
			return "none"
		}
		return st.Describe(now)
	}
	link.set(wanlink.State{Up: true, Address: netip.MustParsePrefix("198.51.100.7/32"), Gateway: netip.MustParseAddr("198.51.100.1"),
		DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}, Interface: "ppp0", Since: now.Add(-time.Minute)})
	if want := "pppoe on wan as fti/abc@fai: 198.51.100.7/32 on ppp0 via 198.51.100.1, DNS 198.51.100.53 (since 16:15:08)"; status() != want {
		t.Errorf("status %q, want %q", status(), want)
	}
	link.set(wanlink.State{Interface: "ppp0", Detail: "pppd exited with status 1: a fatal error", Until: now.Add(3 * time.Second)})
	if want := "pppoe on wan as fti/abc@fai: down (pppd exited with status 1: a fatal error; trying again in 3s)"; status() != want {
		t.Errorf("status %q, want %q", status(), want)
	}
	waitFor(t, 10*time.Second, "the session's facts gone", func() bool { return b.rd.facts()["public"] != "198.51.100.7" })
	p1, err := b.e.Plan(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	link.mu.Lock() // another failure: not signalled
	link.st.Detail, link.st.Until = "pppd exited with status 10: the PPP negotiation failed", now.Add(6*time.Second)
	link.mu.Unlock()
	p2, err := b.e.Plan(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Empty() || p1.Fingerprints()[Name] != p2.Fingerprints()[Name] {
		t.Errorf("a new reason to be down moved the plan: %v\n%q\n%q", p2.Empty(), p1.Fingerprints()[Name], p2.Fingerprints()[Name])
	}
	if want := "pppoe on wan as fti/abc@fai: down (pppd exited with status 10: the PPP negotiation failed; trying again in 6s)"; status() != want {
		t.Errorf("status %q, want %q", status(), want)
	}
}
