package firewall

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

func router(method string, fs ...schema.Forward) *schema.State {
	return &schema.State{Network: schema.Network{
		Mode: "router", WAN: schema.WAN{Method: method}, LAN: schema.LAN{Address: "192.168.1.1"}, Forwards: fs,
	}}
}

func fwd(proto string, port int, to string, toPort int) schema.Forward {
	return schema.Forward{Port: port, Protocol: proto, To: to, ToPort: toPort}
}

// texts lists the rules of chain as "chain: text".
func texts(rs *Ruleset) []string {
	var out []string
	for _, r := range rs.Rules {
		out = append(out, r.Chain+": "+r.Text)
	}
	return out
}

func TestRender(t *testing.T) {
	served := func(wan string) []string {
		var out []string
		for _, p := range ServedTCP {
			out = append(out, fmt.Sprintf(`input: iifname %q fib saddr . iif oif != 0 meta l4proto tcp th dport %d accept`, wan, p))
		}
		return append(out, fmt.Sprintf(`input: iifname %q fib saddr . iif oif != 0 meta l4proto udp th dport 53 accept`, wan))
	}
	tests := []struct {
		name   string
		st     *schema.State
		chains []string
		// want are rules that must be there, absent rules that must not.
		want, absent []string
		rules        int
	}{
		{
			name:   "router, dhcp WAN, one forward",
			st:     router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80)),
			chains: []string{"prerouting", "postrouting", "input", "forward"},
			want: append(served("wan"),
				`input: ct state established,related accept`,
				`input: iifname "lo" accept`,
				`input: iifname "br-lan" accept`,
				`input: iifname "wan" meta l4proto icmp icmp type 8 limit rate 5/second burst 10 packets accept`,
				`forward: ct state established,related accept`,
				`forward: iifname "br-lan" oifname "wan" accept`,
				`postrouting: oifname "wan" masquerade`,
				`prerouting: iifname "wan" meta nfproto ipv4 meta l4proto tcp th dport 8080 dnat ip to 192.168.1.20:80`,
				`forward: iifname "wan" meta nfproto ipv4 ip daddr 192.168.1.20 meta l4proto tcp th dport 80 ct status dnat accept`,
			),
			absent: []string{
				`input: iifname "wan" meta l4proto udp th dport 67 accept`,
				`input: iifname "wan" meta l4proto udp th dport 68 accept`,
				`input: iifname "wan" accept`,
			},
			rules: 4 + 11 + 6 + 3 + 2,
		},
		{
			name:   "router, pppoe: the WAN is ppp0",
			st:     router("pppoe", fwd("udp", 5060, "192.168.1.30", 0)),
			chains: []string{"prerouting", "postrouting", "input", "forward"},
			want: append(served("ppp0"),
				`postrouting: oifname "ppp0" masquerade`,
				`forward: iifname "br-lan" oifname "ppp0" accept`,
				// to_port 0: the same port.
				`prerouting: iifname "ppp0" meta nfproto ipv4 meta l4proto udp th dport 5060 dnat ip to 192.168.1.30:5060`,
				`forward: iifname "ppp0" meta nfproto ipv4 ip daddr 192.168.1.30 meta l4proto udp th dport 5060 ct status dnat accept`,
			),
			absent: []string{`postrouting: oifname "wan" masquerade`},
			rules:  4 + 11 + 6 + 3 + 2,
		},
		{
			name:   "protocol all: tcp and udp",
			st:     router("static", fwd("all", 3000, "192.168.1.40", 3001)),
			chains: []string{"prerouting", "postrouting", "input", "forward"},
			want: []string{
				`prerouting: iifname "wan" meta nfproto ipv4 meta l4proto tcp th dport 3000 dnat ip to 192.168.1.40:3001`,
				`prerouting: iifname "wan" meta nfproto ipv4 meta l4proto udp th dport 3000 dnat ip to 192.168.1.40:3001`,
				`forward: iifname "wan" meta nfproto ipv4 ip daddr 192.168.1.40 meta l4proto tcp th dport 3001 ct status dnat accept`,
				`forward: iifname "wan" meta nfproto ipv4 ip daddr 192.168.1.40 meta l4proto udp th dport 3001 ct status dnat accept`,
			},
			rules: 4 + 11 + 6 + 3 + 4,
		},
		{
			name: "server mode: the LAN only, no NAT, no forwarding",
			st: &schema.State{Network: schema.Network{Mode: "server", WAN: schema.WAN{Method: "static"},
				Forwards: []schema.Forward{fwd("tcp", 8080, "192.168.1.20", 80)}}},
			chains: []string{"input", "forward"},
			want: []string{
				`input: ct state established,related accept`,
				`input: iifname "lo" accept`,
				`input: iifname "br-lan" accept`,
				`forward: iifname "br-lan" oifname "br-lan" accept`,
			},
			absent: append(served("wan"), `postrouting: oifname "wan" masquerade`),
			rules:  4,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Render(InputOf(tc.st, "wan"))
			if err != nil {
				t.Fatal(err)
			}
			var chains []string
			for _, c := range rs.Chains {
				chains = append(chains, c.Name)
			}
			if !slices.Equal(chains, tc.chains) {
				t.Errorf("chains %v, want %v", chains, tc.chains)
			}
			got := texts(rs)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("no rule %s in\n%s", w, strings.Join(got, "\n"))
				}
			}
			for _, a := range tc.absent {
				if slices.Contains(got, a) {
					t.Errorf("rule %s should not be there", a)
				}
			}
			if len(rs.Rules) != tc.rules {
				t.Errorf("%d rules, want %d:\n%s", len(rs.Rules), tc.rules, strings.Join(got, "\n"))
			}
			keys := map[string]bool{}
			for _, r := range rs.Rules {
				if keys[r.Key] {
					t.Errorf("key %q twice", r.Key)
				}
				keys[r.Key] = true
				if g, ours := groupOfKey(r.Key); !ours || g != r.Group {
					t.Errorf("key %q: group %q (ours %v), want %q", r.Key, g, ours, r.Group)
				}
				if r.Chain != "postrouting" && r.Chain != "prerouting" && !strings.HasSuffix(r.Text, " accept") {
					t.Errorf("rule %q does not accept: the rules' order would matter", r.Text)
				}
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, f := range []schema.Forward{
		fwd("tcp", 8080, "not-an-address", 80),
		fwd("tcp", 8080, "2001:db8::1", 80),
		fwd("sctp", 8080, "192.168.1.20", 80),
		fwd("tcp", 0, "192.168.1.20", 80),
		fwd("tcp", 8080, "192.168.1.20", 70000),
	} {
		if _, err := Render(InputOf(router("dhcp", f), "wan")); err == nil {
			t.Errorf("forward %+v rendered", f)
		}
	}
}

// TestKeys: a rule's key changes when anything of it changes, and only
// then; the renderer reuses the rules of an unchanged forward.
func TestKeys(t *testing.T) {
	keyOfGroup := func(rs *Ruleset, group, chain string) string {
		for _, r := range rs.Rules {
			if r.Group == group && r.Chain == chain {
				return r.Key
			}
		}
		return ""
	}
	f := fwd("tcp", 8080, "192.168.1.20", 80)
	base, _ := Render(InputOf(router("dhcp", f), "wan"))
	again, _ := Render(InputOf(router("dhcp", f), "wan"))
	if !slices.Equal(texts(base), texts(again)) || keyOfGroup(base, "forward tcp/8080", "prerouting") != keyOfGroup(again, "forward tcp/8080", "prerouting") {
		t.Fatal("two renders of one document differ")
	}
	for _, tc := range []struct {
		name string
		f    schema.Forward
	}{
		{"to", fwd("tcp", 8080, "192.168.1.21", 80)},
		{"to_port", fwd("tcp", 8080, "192.168.1.20", 81)},
	} {
		rs, _ := Render(InputOf(router("dhcp", tc.f), "wan"))
		for _, chain := range []string{"prerouting", "forward"} {
			if keyOfGroup(rs, "forward tcp/8080", chain) == keyOfGroup(base, "forward tcp/8080", chain) {
				t.Errorf("%s changed: the %s rule kept its key", tc.name, chain)
			}
		}
	}

	var rd renderer
	one, _ := rd.render(InputOf(router("dhcp", f), "wan"))
	two, _ := rd.render(InputOf(router("dhcp", f, fwd("udp", 9000, "192.168.1.22", 9000)), "wan"))
	for i, r := range one.Rules {
		if two.Rules[i] != r {
			t.Errorf("rule %q made again, not reused", r.Key)
		}
	}
	ppp, _ := rd.render(InputOf(router("pppoe", f), "wan"))
	if ppp.Rules[len(ppp.Rules)-1] == one.Rules[len(one.Rules)-1] || !strings.Contains(ppp.Rules[len(ppp.Rules)-1].Text, `"ppp0"`) {
		t.Error("another WAN interface reused the forward's rules")
	}
}

func TestKeyOf(t *testing.T) {
	for _, tc := range []struct {
		ud   []byte
		want string
	}{
		{userData("mf box: lan #0123"), "mf box: lan #0123"},
		{nil, ""},
		{[]byte{0}, ""},
		{[]byte{0, 200, 'a'}, ""}, // cut short
		{[]byte{1, 1, 'x', 0, 3, 'a', 'b', 0}, "ab"}, // another TLV first
	} {
		if got := keyOf(tc.ud); got != tc.want {
			t.Errorf("keyOf(%q) = %q, want %q", tc.ud, got, tc.want)
		}
	}
}

// TestPlan plans against observations made up here: what Observe would
// list of a table in each state.
func TestPlan(t *testing.T) {
	ctx := context.Background()
	st := router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80), fwd("udp", 9000, "192.168.1.21", 9000))
	rs, err := Render(InputOf(st, "wan"))
	if err != nil {
		t.Fatal(err)
	}
	full := func() *live {
		l := &live{exists: true, chains: rs.Chains}
		for i, r := range rs.Rules {
			l.rules = append(l.rules, LiveRule{Chain: r.Chain, Handle: uint64(i + 10), Key: r.Key})
		}
		return l
	}
	without := func(group string) *live {
		l := full()
		l.rules = slices.DeleteFunc(l.rules, func(x LiveRule) bool { g, _ := groupOfKey(x.Key); return g == group })
		return l
	}
	plus := func(x LiveRule) *live { l := full(); l.rules = append(l.rules, x); return l }
	otherChains := full()
	otherChains.chains = slices.Clone(rs.Chains)
	otherChains.chains[2].Policy = 1 // input: accept

	tests := []struct {
		name    string
		live    *live
		applied bool // the reconciler applied st before
		want    []string
		drift   int
	}{
		{"no table", &live{}, false, []string{"+ firewall table inet mailfountain (router mode, 2 forwards: 28 rules)"}, 0},
		{"table deleted by hand", &live{}, true, []string{"~ firewall table inet mailfountain (deleted by hand: made again, router mode, 2 forwards: 28 rules)"}, 1},
		{"in sync", full(), true, nil, 0},
		{"a new forward", without("forward udp/9000"), false, []string{"+ firewall forward udp/9000 (→ 192.168.1.21:9000)"}, 0},
		{"a forward's rules deleted by hand", without("forward udp/9000"), true, []string{"~ firewall forward udp/9000 (→ 192.168.1.21:9000; 2 rules deleted by hand: added again)"}, 2},
		{"a rule added by hand", plus(LiveRule{Chain: "input", Handle: 99}), true, []string{"- firewall rule input/99 (added by hand, no comment)"}, 1},
		{"a rule of ours twice", plus(LiveRule{Chain: "input", Handle: 98, Key: rs.Rules[0].Key}), true, []string{fmt.Sprintf("- firewall rule input/98 (added by hand, comment %q)", rs.Rules[0].Key)}, 1},
		{"a rule of ours copied into another chain", func() *live {
			l := full()
			l.rules = append([]LiveRule{{Chain: "forward", Handle: 96, Key: rs.Rules[0].Key}}, l.rules...)
			return l
		}(), true, []string{fmt.Sprintf("- firewall rule forward/96 (added by hand, comment %q)", rs.Rules[0].Key)}, 1},
		{"a forward no longer wanted", plus(LiveRule{Chain: "prerouting", Handle: 97, Key: "mf forward tcp/22: dnat tcp/22 192.168.1.9:22 #abc"}), false, []string{"- firewall forward tcp/22"}, 0},
		{"a chain changed by hand", otherChains, true, []string{"~ firewall table inet mailfountain (rebuilt whole: chain input changed (changed by hand); router mode, 2 forwards: 28 rules)"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{WAN: "wan"})
			if tc.applied {
				r.applied = map[string]string{}
				for _, x := range rs.Rules {
					r.applied[x.Key] = x.Chain
				}
			}
			changes, err := r.Plan(ctx, tc.live, st)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			drift := 0
			for _, c := range changes {
				got = append(got, c.String())
				drift += c.Payload.(*step).drift
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if drift != tc.drift {
				t.Errorf("drift %d, want %d", drift, tc.drift)
			}
		})
	}
}

// TestSkipped: without box hardware the reconciler plans nothing and
// applies nothing, whatever the document (it would fail to reach
// nftables as a user; as root it must not touch the host's).
func TestSkipped(t *testing.T) {
	ctx := context.Background()
	r := New(Config{WAN: "eth0", Skip: reconcilers.ReasonNoHardware})
	if r.SkipReason() != reconcilers.ReasonNoHardware {
		t.Fatalf("SkipReason %q", r.SkipReason())
	}
	l, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := r.Plan(ctx, l, router("dhcp", fwd("tcp", 8080, "192.168.1.20", 80)))
	if err != nil || len(changes) != 0 {
		t.Fatalf("plan %v, %v; want none", changes, err)
	}
	if err := r.Apply(ctx, []reconcilers.Change{{Op: reconcilers.Create, Resource: "x", Payload: &step{batch: batch{reload: &Ruleset{}}}}}); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s != (Stats{}) {
		t.Fatalf("stats %+v: something was read or sent", s)
	}
}

// FuzzKeyOf: a rule's user data comes from whoever made the rule (nft by
// hand, another program): keyOf never panics, and reads back the comments
// it writes.
func FuzzKeyOf(f *testing.F) {
	f.Add([]byte(nil), "mf box: lan #0123")
	f.Add([]byte{0, 200, 'a'}, "")
	f.Add([]byte{1, 1, 'x', 0, 3, 'a', 'b', 0}, "mf forward tcp/8080: dnat tcp/8080 192.168.1.20:80 #1f0c")
	f.Fuzz(func(t *testing.T, ud []byte, comment string) {
		keyOf(ud)
		if len(comment) < 200 && !strings.ContainsRune(comment, 0) {
			if got := keyOf(userData(comment)); got != comment {
				t.Errorf("keyOf(userData(%q)) = %q", comment, got)
			}
		}
	})
}
