package firewall

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/schema"
)

// The table MailFountain owns: nothing else in the ruleset is ever read
// for a decision or changed.
const (
	TableName   = "mailfountain"
	TableFamily = nftables.TableFamilyINet
)

// The ruleset matches interfaces by name (iifname, oifname), so that a
// link that comes and goes (ppp0) keeps its rules: the LAN bridge
// hw.LANBridge (LAN1 and LAN2 in router mode, every port in server mode),
// the WAN port or hw.PPPInterface, and loopback.
const loopback = "lo"

// ServedTCP and ServedUDP are the box's own services open from the WAN
// (the schema's servedPorts, which no forward may take): SMTP,
// submission, POP3, IMAP and their TLS ports, DNS, HTTP(S). 67 and 68
// (DHCP) never: the WAN's DHCP client reads raw packets, which the
// firewall does not see.
var (
	ServedTCP = []uint16{25, 53, 80, 110, 143, 443, 465, 587, 993, 995}
	ServedUDP = []uint16{53}
)

// Echo requests from the WAN are answered at most at this rate.
const (
	echoRate  = 5
	echoBurst = 10
)

// commentPrefix starts the comment (rule user data) of each of our rules;
// the comment is the rule's key: its description and a hash of its
// chain and expressions, so that a rule changed by us or by hand is a
// rule with another key.
const commentPrefix = "mf "

// Chain is a base chain of the table.
type Chain struct {
	Name     string
	Type     nftables.ChainType
	Hook     nftables.ChainHook
	Priority nftables.ChainPriority
	Policy   nftables.ChainPolicy
}

// Rule is one rule of the table: its chain, what it matches and does as
// netlink expressions and as nft text, and its key.
type Rule struct {
	Chain string
	// Group is what the rule belongs to in a plan: "forward tcp/8080",
	// "box" for the fixed rules.
	Group string
	// Key is the rule's comment: "mf ", the group, ": ", a description,
	// " #" and a hash of Chain and Exprs ("mf forward tcp/8080: dnat
	// tcp/8080 192.168.1.20:80 #0123456789ab").
	Key   string
	Exprs []expr.Any
	// Text is the rule as `nft add rule` takes it, without the comment.
	Text string
}

// Ruleset is the whole table: its chains and their rules.
type Ruleset struct {
	Chains []Chain
	Rules  []*Rule
}

// Input is what the ruleset is made of: the document's network section
// and the box's WAN port.
type Input struct {
	// Mode is network.mode: "router" or "server".
	Mode string
	// WAN is the interface of the WAN link: the profile's WAN port, or
	// hw.PPPInterface with wan.method pppoe.
	WAN string
	// Forwards are network.forwards (router mode only).
	Forwards []schema.Forward
}

// InputOf derives the ruleset's input from the document and the box's
// WAN port.
func InputOf(st *schema.State, wanPort string) Input {
	in := Input{Mode: st.Network.Mode, WAN: wanPort}
	if in.Mode == "" {
		in.Mode = "router"
	}
	if st.Network.WAN.Method == "pppoe" {
		in.WAN = hw.PPPInterface
	}
	if in.Mode == "router" {
		in.Forwards = st.Network.Forwards
	}
	return in
}

// Render builds the table's ruleset. A forward whose address does not
// parse (a State not from the loader, which checks them) is an error.
//
// Every rule accepts, translates or masquerades, none drops: the chains'
// policies drop what no rule accepts, so the order of the rules in a
// chain never matters, and a rule can be added or deleted alone.
func Render(in Input) (*Ruleset, error) { return new(renderer).render(in) }

// renderer keeps the rules it made, by what they are made of, for its
// next render: a plan of 1,000 forwards where one changed makes the rules
// of one forward, not of 1,000.
type renderer struct {
	box map[boxInput][]*Rule
	fwd map[fwdInput][]*Rule
}

type boxInput struct{ mode, wan string }

type fwdInput struct {
	wan string
	f   schema.Forward
}

func (rd *renderer) render(in Input) (*Ruleset, error) {
	rs := &Ruleset{Chains: chainsOf(in.Mode)}
	box, fwd := map[boxInput][]*Rule{}, make(map[fwdInput][]*Rule, len(in.Forwards))
	bk := boxInput{in.Mode, in.WAN}
	rules, ok := rd.box[bk]
	if !ok {
		rules = boxRules(in)
	}
	box[bk] = rules
	rs.Rules = append(rs.Rules, rules...)
	for _, f := range in.Forwards {
		fk := fwdInput{in.WAN, f}
		rules, ok := rd.fwd[fk]
		if !ok {
			var err error
			if rules, err = forwardRules(in.WAN, f); err != nil {
				return nil, err
			}
		}
		fwd[fk] = rules
		rs.Rules = append(rs.Rules, rules...)
	}
	// Only what this render used is kept: the cache never outgrows the
	// document.
	rd.box, rd.fwd = box, fwd
	return rs, nil
}

func chainsOf(mode string) []Chain {
	drop, accept := nftables.ChainPolicyDrop, nftables.ChainPolicyAccept
	var cs []Chain
	if mode == "router" {
		cs = append(cs,
			Chain{"prerouting", nftables.ChainTypeNAT, *nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest, accept},
			Chain{"postrouting", nftables.ChainTypeNAT, *nftables.ChainHookPostrouting, *nftables.ChainPriorityNATSource, accept},
		)
	}
	return append(cs,
		Chain{"input", nftables.ChainTypeFilter, *nftables.ChainHookInput, *nftables.ChainPriorityFilter, drop},
		Chain{"forward", nftables.ChainTypeFilter, *nftables.ChainHookForward, *nftables.ChainPriorityFilter, drop},
	)
}

// boxRules are the rules of the box itself, whatever the forwards.
func boxRules(in Input) []*Rule {
	const box = "box"
	var rules []*Rule
	add := func(b *builder) { rules = append(rules, b.done()) }

	// Input: established traffic, loopback and the LAN, always.
	add(rule("input", box, "established").ctState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED).accept())
	add(rule("input", box, "loopback").iif(loopback).accept())
	add(rule("input", box, "lan").iif(hw.LANBridge).accept())
	// The bridge is a switch between its ports (LAN1 and LAN2; every port
	// in server mode): where br_netfilter is loaded, what it switches
	// passes the forward hook, and must pass it.
	add(rule("forward", box, "within the lan").iif(hw.LANBridge).oif(hw.LANBridge).accept())
	if in.Mode != "router" {
		// Server mode: the bridge is the only interface; no NAT, no
		// routing (the forward chain's policy drops the rest).
		return rules
	}

	// Input from the WAN: the box's own services, and ICMP.
	for _, p := range ServedTCP {
		add(rule("input", box, fmt.Sprintf("wan tcp/%d", p)).iif(in.WAN).rpf().l4(unix.IPPROTO_TCP).dport(p).accept())
	}
	for _, p := range ServedUDP {
		add(rule("input", box, fmt.Sprintf("wan udp/%d", p)).iif(in.WAN).rpf().l4(unix.IPPROTO_UDP).dport(p).accept())
	}
	const (
		icmpEcho, icmpUnreach, icmpTimeExceeded, icmpParamProblem = 8, 3, 11, 12
		icmp6Unreach, icmp6ParamProblem, icmp6Echo                = 1, 4, 128
		icmp6RouterSolicit, icmp6NeighborAdvert                   = 133, 136
	)
	add(rule("input", box, "wan icmp echo").iif(in.WAN).l4(unix.IPPROTO_ICMP).icmpType("icmp", icmpEcho, icmpEcho).limit().accept())
	add(rule("input", box, "wan icmp unreachable").iif(in.WAN).l4(unix.IPPROTO_ICMP).icmpType("icmp", icmpUnreach, icmpUnreach).accept())
	add(rule("input", box, "wan icmp time exceeded, parameter problem").iif(in.WAN).l4(unix.IPPROTO_ICMP).icmpType("icmp", icmpTimeExceeded, icmpParamProblem).accept())
	add(rule("input", box, "wan icmpv6 echo").iif(in.WAN).l4(unix.IPPROTO_ICMPV6).icmpType("icmpv6", icmp6Echo, icmp6Echo).limit().accept())
	add(rule("input", box, "wan icmpv6 errors").iif(in.WAN).l4(unix.IPPROTO_ICMPV6).icmpType("icmpv6", icmp6Unreach, icmp6ParamProblem).accept())
	add(rule("input", box, "wan icmpv6 neighbour discovery").iif(in.WAN).l4(unix.IPPROTO_ICMPV6).icmpType("icmpv6", icmp6RouterSolicit, icmp6NeighborAdvert).accept())

	// Forwarding: the LAN out to the WAN, what answers it back; NAT out
	// of the WAN.
	add(rule("forward", box, "established").ctState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED).accept())
	add(rule("forward", box, "lan to wan").iif(hw.LANBridge).oif(in.WAN).accept())
	add(rule("postrouting", box, "masquerade").oif(in.WAN).masquerade())
	return rules
}

// forwardRules are a port forward's (manual 6.2.1.3): DNAT on the WAN,
// and the forward accept of what was translated so (never the LAN host
// reached straight from the WAN); twice for protocol "all".
func forwardRules(wan string, f schema.Forward) ([]*Rule, error) {
	to, err := netip.ParseAddr(f.To)
	if err != nil || !to.Is4() {
		return nil, fmt.Errorf("port forward %s/%d: the LAN destination %q is no IPv4 address", f.Protocol, f.Port, f.To)
	}
	if f.Port < 1 || f.Port > 65535 || f.ToPort < 0 || f.ToPort > 65535 {
		return nil, fmt.Errorf("port forward %s/%d: ports out of range", f.Protocol, f.Port)
	}
	toPort := f.ToPort
	if toPort == 0 {
		toPort = f.Port
	}
	var protos []uint8
	switch f.Protocol {
	case "tcp", "":
		protos = []uint8{unix.IPPROTO_TCP}
	case "udp":
		protos = []uint8{unix.IPPROTO_UDP}
	case "all":
		protos = []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP}
	default:
		return nil, fmt.Errorf("port forward %s/%d: unknown protocol %q", f.Protocol, f.Port, f.Protocol)
	}
	group := ForwardGroup(f)
	var rules []*Rule
	for _, p := range protos {
		desc := fmt.Sprintf("%s/%d %s:%d", protoName(p), f.Port, to, toPort)
		rules = append(rules,
			rule("prerouting", group, "dnat "+desc).iif(wan).ipv4().l4(p).dport(uint16(f.Port)).dnat(to, uint16(toPort)).done(),
			rule("forward", group, "accept "+desc).iif(wan).ipv4().daddr(to).l4(p).dport(uint16(toPort)).ctStatusDNAT().accept().done())
	}
	return rules, nil
}

// ForwardGroup is the plan's name of a port forward's rules.
func ForwardGroup(f schema.Forward) string {
	p := f.Protocol
	if p == "" {
		p = "tcp"
	}
	return fmt.Sprintf("forward %s/%d", p, f.Port)
}

func protoName(p uint8) string {
	if p == unix.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// Text is the ruleset as an nft script that replaces the table whole
// (what `nft -f` loads in one transaction): the benchmark's reference,
// and a readable form of the rules.
func (rs *Ruleset) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", TableName, TableName, TableName)
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype %s hook %s priority %d; policy %s;\n", c.Name, c.Type, hookName(c.Hook), int32(c.Priority), policyName(c.Policy))
		for _, r := range rs.Rules {
			if r.Chain == c.Name {
				fmt.Fprintf(&b, "\t\t%s comment %q\n", r.Text, r.Key)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	}
	return fmt.Sprintf("hook%d", h)
}

func policyName(p nftables.ChainPolicy) string {
	if p == nftables.ChainPolicyAccept {
		return "accept"
	}
	return "drop"
}

// builder makes a rule's expressions and its nft text side by side.
type builder struct {
	r    Rule
	desc string
	text []string
}

func rule(chain, group, desc string) *builder {
	return &builder{r: Rule{Chain: chain, Group: group}, desc: desc}
}

func (b *builder) add(text string, es ...expr.Any) *builder {
	b.r.Exprs = append(b.r.Exprs, es...)
	b.text = append(b.text, text)
	return b
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// NUL padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func (b *builder) iif(name string) *builder {
	return b.add(fmt.Sprintf("iifname %q", name),
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)})
}

func (b *builder) oif(name string) *builder {
	return b.add(fmt.Sprintf("oifname %q", name),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)})
}

// rpf matches packets whose source address is routed back through the
// interface they came in by (reverse path): from the WAN, a packet
// forged with a LAN source address is not, and so never reaches the box's
// services as if from the LAN (the DNS server answers the LAN's addresses
// as a resolver).
func (b *builder) rpf() *builder {
	return b.add("fib saddr . iif oif != 0",
		&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, ResultOIF: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

func (b *builder) ipv4() *builder {
	return b.add("meta nfproto ipv4",
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
}

func (b *builder) l4(p uint8) *builder {
	var name string
	switch p {
	case unix.IPPROTO_TCP:
		name = "tcp"
	case unix.IPPROTO_UDP:
		name = "udp"
	case unix.IPPROTO_ICMP:
		name = "icmp"
	case unix.IPPROTO_ICMPV6:
		name = "ipv6-icmp"
	}
	return b.add("meta l4proto "+name,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
}

func (b *builder) dport(p uint16) *builder {
	return b.add(fmt.Sprintf("th dport %d", p),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p)})
}

func (b *builder) daddr(a netip.Addr) *builder {
	a4 := a.As4()
	return b.add("ip daddr "+a.String(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a4[:]})
}

// icmpType matches the ICMP (or ICMPv6) type from lo to hi.
func (b *builder) icmpType(family string, lo, hi uint8) *builder {
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}
	if lo == hi {
		return b.add(fmt.Sprintf("%s type %d", family, lo), load,
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{lo}})
	}
	return b.add(fmt.Sprintf("%s type %d-%d", family, lo, hi), load,
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{lo}, ToData: []byte{hi}})
}

// ctBits matches packets whose conntrack key (state, status: host byte
// order) has one of bits.
func (b *builder) ctBits(text string, key expr.CtKey, bits uint32) *builder {
	return b.add(text,
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
}

func (b *builder) ctState(bits uint32) *builder {
	return b.ctBits("ct state established,related", expr.CtKeySTATE, bits)
}

// ctStatusDNAT matches connections whose destination was translated.
func (b *builder) ctStatusDNAT() *builder {
	const ipsDstNAT = 1 << 5
	return b.ctBits("ct status dnat", expr.CtKeySTATUS, ipsDstNAT)
}

func (b *builder) limit() *builder {
	return b.add(fmt.Sprintf("limit rate %d/second burst %d packets", echoRate, echoBurst),
		&expr.Limit{Type: expr.LimitTypePkts, Rate: echoRate, Unit: expr.LimitTimeSecond, Burst: echoBurst})
}

func (b *builder) accept() *builder {
	return b.add("accept", &expr.Verdict{Kind: expr.VerdictAccept})
}

func (b *builder) masquerade() *builder {
	return b.add("masquerade", &expr.Masq{})
}

func (b *builder) dnat(to netip.Addr, port uint16) *builder {
	a4 := to.As4()
	return b.add(fmt.Sprintf("dnat ip to %s:%d", to, port),
		&expr.Immediate{Register: 1, Data: a4[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
}

// done sets the rule's text and key. The hash covers the chain and the
// text, which the same calls made as the expressions: a rule changed by
// hand keeps no key of ours unless its comment is copied too.
func (b *builder) done() *Rule {
	b.r.Text = strings.Join(b.text, " ")
	h := fnv.New64a()
	h.Write([]byte(b.r.Chain))
	h.Write([]byte{0})
	h.Write([]byte(b.r.Text))
	b.r.Key = commentPrefix + b.r.Group + ": " + b.desc + " #" + hex.EncodeToString(h.Sum(nil))[:12]
	return &b.r
}

// userData is the rule's key as nft writes a comment: a TLV, the string
// NUL terminated.
func userData(key string) []byte {
	return userdata.Append(nil, userdata.TypeComment, append([]byte(key), 0))
}

// keyOf reads the comment of a rule's user data, "" when it has none or
// the TLVs are cut short (a rule made by hand may carry anything).
func keyOf(ud []byte) string {
	for len(ud) >= 2 {
		typ, n := userdata.Type(ud[0]), int(ud[1])
		if len(ud) < 2+n {
			return ""
		}
		if typ == userdata.TypeComment {
			return strings.TrimSuffix(string(ud[2:2+n]), "\x00")
		}
		ud = ud[2+n:]
	}
	return ""
}
