// Package firewall is the firewall reconciler: it owns network.forwards
// and converges one nftables table, `inet mailfountain`, to the ruleset
// the document's network section asks for (router mode: NAT out of the
// WAN, the LAN forwarded, the port forwards of manual 6.2.1.3, the box's
// own services open from the WAN; server mode: the LAN only). It never
// reads a decision from, nor changes, any other table.
//
// The whole table is written in one netlink batch, which the kernel
// commits as one transaction; after that, only the rules that differ are
// deleted or added, in one batch too. Each rule carries its key as a
// comment (its description and a hash of its expressions), so Observe
// finds a rule deleted, added or changed by hand (drift) and Plan puts
// it right; Watch hears of such a change from the kernel's nftables
// events. Observe first reads the ruleset's generation: unchanged since
// the last observation, nothing else is read and nothing is sent.
//
// It works in the current network namespace: the box's (the daemon runs
// inside it, package hw). Without box hardware it touches nothing and
// reports skipped (reconcilers.Skipper). Its caller (the registry) gives
// it the WAN port of the box's profile; the interfaces themselves are the
// network reconciler's.
package firewall

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// Name is the reconciler's name in plans and statuses.
const Name = "firewall"

// Metrics is what the reconciler reports; runtime/metrics implements it.
type Metrics interface {
	// FirewallApplied: a batch committed, with the rules it added and
	// deleted, and how long the commit took.
	FirewallApplied(added, deleted int, took time.Duration)
	// FirewallDriftCorrected: rules (or a table or chain) changed by
	// hand and put right by an apply.
	FirewallDriftCorrected(n int)
}

type noMetrics struct{}

func (noMetrics) FirewallApplied(int, int, time.Duration) {}
func (noMetrics) FirewallDriftCorrected(int)              {}

// Config is what the reconciler is built from.
type Config struct {
	// WAN is the box's WAN port (its profile's: "eth0", or "wan" in the
	// virtual box); with wan.method pppoe the WAN link is hw.PPPInterface
	// instead.
	WAN string
	// Skip is the reason the reconciler has nothing to drive
	// (reconcilers.ReasonNoHardware), "" on a box.
	Skip    string
	Metrics Metrics
	Logger  *slog.Logger
}

// Stats count what the reconciler sent to the kernel.
type Stats struct {
	// Batches are the transactions committed; Messages the netlink
	// messages in them (table, chains, rules added or deleted).
	Batches, Messages int
	// Dumps are the rule listings read (a changed generation).
	Dumps int
}

// Reconciler converges the table.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// cache is the last observation and the generation it was made at:
	// a listing, or after an apply what the listing before it and the
	// batch make (the new rules' handles unknown: read when needed).
	cache *live
	rd    renderer
	// applied are the keys of the rules the table was last known to hold
	// as wanted (the last apply, or a plan that found it in sync), nil
	// before: a rule of them found missing is drift.
	applied map[string]string
	// lastGen is the generation the reconciler's last batch made (Watch
	// ignores its own events).
	lastGen uint32
	stats   Stats
}

// New returns the reconciler of cfg.
func New(cfg Config) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.With("reconciler", Name)}
}

// Name implements reconcilers.Reconciler.
func (r *Reconciler) Name() string { return Name }

// Owns implements reconcilers.Reconciler.
func (r *Reconciler) Owns() []string { return []string{"network.forwards"} }

// ReadsFields implements reconcilers.FieldReader: the mode decides NAT
// and forwarding, the WAN method the WAN interface; the LAN address is
// the network reconciler's (the ruleset names the LAN bridge, not its
// address), read so that a change of the LAN plans the firewall again.
func (r *Reconciler) ReadsFields() []string {
	return []string{"network.mode", "network.wan.method", "network.lan.address"}
}

// SkipReason implements reconcilers.Skipper.
func (r *Reconciler) SkipReason() string { return r.cfg.Skip }

// Stats returns what was sent to the kernel so far.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// live is what Observe found of the table.
type live struct {
	skipped bool
	gen     uint32
	exists  bool
	chains  []Chain
	// rules are in the order listed; a rule added by the last apply has
	// handle 0 until a listing reads it.
	rules []LiveRule

	fpOnce sync.Once
	fp     string
}

// Fingerprint is a hash of the table's chains and rules.
func (l *live) Fingerprint() string {
	l.fpOnce.Do(func() { l.fp = l.fingerprint() })
	return l.fp
}

func (l *live) fingerprint() string {
	if l.skipped {
		return "skipped"
	}
	h := sha256.New()
	fmt.Fprintf(h, "exists=%v\n", l.exists)
	for _, c := range l.chains {
		fmt.Fprintf(h, "chain %s %s %d %d %d\n", c.Name, c.Type, c.Hook, c.Priority, c.Policy)
	}
	for _, r := range l.rules {
		fmt.Fprintf(h, "rule %s %d %s\n", r.Chain, r.Handle, r.Key)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Observe reads the table, unless the ruleset's generation is the one of
// the last observation: then nothing changed and the last one stands.
func (r *Reconciler) Observe(ctx context.Context) (reconcilers.Live, error) {
	if r.cfg.Skip != "" {
		return &live{skipped: true}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The generation first: a change between it and the listing makes
	// the next observation list again.
	gen, err := readGen(c)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	cached := r.cache
	r.mu.Unlock()
	if cached != nil && cached.gen == gen {
		return cached, nil
	}
	l := &live{gen: gen}
	if l.rules, l.exists, err = dumpRules(c); err != nil {
		return nil, err
	}
	if l.exists {
		if l.chains, err = listChains(); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.cache = l
	r.stats.Dumps++
	r.mu.Unlock()
	return l, nil
}

// step is a change's payload: its part of the batch.
type step struct {
	batch
	// base is the observation planned from.
	base *live
	// want are the keys of the whole desired ruleset, with their chains.
	want map[string]string
	// drift counts what of it corrects a change made by hand.
	drift int
}

// Plan compares the table with the ruleset of the document: a missing
// table, or chains other than the ruleset's, rebuild the table whole (one
// change); otherwise the rules that differ, grouped by what they are for
// (a port forward, the box's own rules), are deleted and added.
func (r *Reconciler) Plan(_ context.Context, observed reconcilers.Live, desired *schema.State) ([]reconcilers.Change, error) {
	l, ok := observed.(*live)
	if !ok {
		return nil, fmt.Errorf("live state of type %T, not one the firewall reconciler observed", observed)
	}
	if l.skipped {
		return nil, nil
	}
	if desired == nil {
		return nil, errors.New("no desired state")
	}
	in := InputOf(desired, r.cfg.WAN)
	r.mu.Lock()
	rs, err := r.rd.render(in)
	applied := r.applied
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("plan the firewall: %w", err)
	}
	want := make(map[string]string, len(rs.Rules))
	for _, x := range rs.Rules {
		want[x.Key] = x.Chain
	}
	resource := fmt.Sprintf("firewall table inet %s", TableName)

	if !l.exists {
		s := &step{batch: batch{reload: rs}, base: l, want: want}
		op, detail := reconcilers.Create, summary(in, rs)
		if applied != nil {
			op, detail, s.drift = reconcilers.Update, "deleted by hand: made again, "+detail, 1
		}
		return []reconcilers.Change{{Op: op, Resource: resource, Detail: detail, Payload: s}}, nil
	}
	if d := chainsDiffer(l.chains, rs.Chains); d != "" {
		s := &step{batch: batch{reload: rs}, base: l, want: want}
		if sameKeys(applied, want) {
			s.drift = 1
			d += " (changed by hand)"
		}
		return []reconcilers.Change{{Op: reconcilers.Update, Resource: resource,
			Detail: "rebuilt whole: " + d + "; " + summary(in, rs), Payload: s}}, nil
	}

	// Rules: ours that the ruleset still has stay; everything else in
	// the table goes (rules of ours no longer wanted, duplicates, rules
	// made by hand); the ruleset's rules not found are added.
	type group struct {
		s                       *step
		added, deleted, missing int
	}
	groups := map[string]*group{}
	var order []string
	get := func(name string) *group {
		g, ok := groups[name]
		if !ok {
			g = &group{s: &step{base: l, want: want}}
			groups[name] = g
			order = append(order, name)
		}
		return g
	}
	seen := make(map[string]bool, len(l.rules))
	var foreign []LiveRule
	for _, lr := range l.rules {
		if want[lr.Key] == lr.Chain && !seen[lr.Key] {
			seen[lr.Key] = true
			continue
		}
		// Not ours, or a copy of a wanted rule (a second one, or one in
		// another chain): made by hand.
		name, ours := groupOfKey(lr.Key)
		if !ours || want[lr.Key] != "" {
			foreign = append(foreign, lr)
			continue
		}
		g := get(name)
		g.s.del = append(g.s.del, lr)
		g.deleted++
	}
	for _, x := range rs.Rules {
		if seen[x.Key] {
			continue
		}
		g := get(x.Group)
		g.s.add = append(g.s.add, x)
		g.added++
		if applied[x.Key] != "" {
			g.missing++
			g.s.drift++
		}
	}

	var changes []reconcilers.Change
	details := forwardDetails(in)
	for _, name := range order {
		g := groups[name]
		op := reconcilers.Update
		switch {
		case g.deleted == 0:
			op = reconcilers.Create
		case g.added == 0:
			op = reconcilers.Delete
		}
		var d []string
		if op != reconcilers.Delete && details[name] != "" {
			d = append(d, details[name])
		}
		if g.missing > 0 {
			if op == reconcilers.Create {
				op = reconcilers.Update
			}
			d = append(d, rules(g.missing)+" deleted by hand: added again")
		} else if op == reconcilers.Update {
			d = append(d, rules(g.added)+" replaced")
		}
		changes = append(changes, reconcilers.Change{Op: op, Resource: "firewall " + name, Detail: strings.Join(d, "; "), Payload: g.s})
	}
	for _, f := range foreign {
		what := "no comment"
		if f.Key != "" {
			what = fmt.Sprintf("comment %q", f.Key)
		}
		changes = append(changes, reconcilers.Change{
			Op: reconcilers.Delete, Resource: fmt.Sprintf("firewall rule %s/%d", f.Chain, f.Handle),
			Detail:  "added by hand, " + what,
			Payload: &step{batch: batch{del: []LiveRule{f}}, base: l, want: want, drift: 1},
		})
	}
	if len(changes) == 0 {
		// In sync: the table holds the ruleset (after a restart too), so
		// a rule of it that goes missing later was deleted by hand.
		r.mu.Lock()
		r.applied = want
		r.mu.Unlock()
	}
	return changes, nil
}

// sameKeys reports whether the last apply left the ruleset wanted now:
// then what differs was changed by hand.
func sameKeys(applied, want map[string]string) bool {
	return applied != nil && maps.Equal(applied, want)
}

// chainsDiffer says how the table's chains differ from the ruleset's, ""
// when they do not.
func chainsDiffer(have, want []Chain) string {
	var d []string
	for _, w := range want {
		i := slices.IndexFunc(have, func(c Chain) bool { return c.Name == w.Name })
		switch {
		case i < 0:
			d = append(d, "chain "+w.Name+" missing")
		case have[i] != w:
			d = append(d, "chain "+w.Name+" changed")
		}
	}
	for _, h := range have {
		if !slices.ContainsFunc(want, func(c Chain) bool { return c.Name == h.Name }) {
			d = append(d, "chain "+h.Name+" not wanted")
		}
	}
	return strings.Join(d, ", ")
}

// forwardDetails are the plan's details of the forwards: "→ 192.168.1.20:80".
func forwardDetails(in Input) map[string]string {
	m := map[string]string{}
	for _, f := range in.Forwards {
		to := f.ToPort
		if to == 0 {
			to = f.Port
		}
		m[ForwardGroup(f)] = fmt.Sprintf("→ %s:%d", f.To, to)
	}
	return m
}

// Apply commits the changes' rules in one batch: the table rebuilt whole
// when a change says so, else every deletion and addition together.
func (r *Reconciler) Apply(ctx context.Context, changes []reconcilers.Change) error {
	if r.cfg.Skip != "" || len(changes) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var b batch
	var want map[string]string
	var base *live
	drift := 0
	for _, c := range changes {
		s, ok := c.Payload.(*step)
		if !ok {
			return fmt.Errorf("apply %s: payload of type %T", c.Resource, c.Payload)
		}
		want, base, drift = s.want, s.base, drift+s.drift
		if s.reload != nil {
			b.reload = s.reload
		}
		b.del = append(b.del, s.del...)
		b.add = append(b.add, s.add...)
	}
	if b.reload != nil {
		b.del, b.add = nil, nil
	}

	start := time.Now()
	after, err := r.commit(&b, base)
	took := time.Since(start)
	r.mu.Lock()
	r.cache = after
	if err == nil {
		r.applied = want
		r.stats.Batches++
		r.stats.Messages += b.messages()
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	added, deleted := len(b.add), len(b.del)
	if b.reload != nil {
		added = len(b.reload.Rules)
	}
	r.cfg.Metrics.FirewallApplied(added, deleted, took)
	if drift > 0 {
		r.cfg.Metrics.FirewallDriftCorrected(drift)
		r.log.Warn("firewall drift corrected", "table", TableName, "corrections", drift)
	}
	r.log.Info("firewall applied", "table", TableName, "rebuilt", b.reload != nil, "added", added, "deleted", deleted, "took", took)
	return nil
}

// commit sends b, planned from base, and returns what the table is now
// when the generations show that only this batch changed the ruleset
// since base was listed (nil otherwise: the next Observe lists it).
func (r *Reconciler) commit(b *batch, base *live) (*live, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	gen, err := readGen(c)
	if err != nil {
		return nil, err
	}
	// The rules deleted as base has them (a handle read below is not).
	gone := make(map[LiveRule]bool, len(b.del))
	for _, x := range b.del {
		gone[x] = true
	}
	if slices.ContainsFunc(b.del, func(x LiveRule) bool { return x.Handle == 0 }) {
		// Rules the last apply added: their handles are read now.
		if err := resolveHandles(c, b.del); err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.stats.Dumps++
		r.mu.Unlock()
	}
	// The generation this batch will make, unless another transaction
	// comes first (then Watch takes that one for ours: the resync still
	// sees it): Watch's event may come before send returns.
	r.mu.Lock()
	r.lastGen = gen + 1
	r.mu.Unlock()
	if err := send(b); err != nil {
		return nil, err
	}
	now, err := readGen(c)
	if err != nil || base == nil || base.gen != gen || now != gen+1 {
		return nil, nil
	}
	after := &live{gen: now, exists: true, chains: base.chains}
	if b.reload != nil {
		after.chains = b.reload.Chains
		for _, x := range b.reload.Rules {
			after.rules = append(after.rules, LiveRule{Chain: x.Chain, Key: x.Key})
		}
		return after, nil
	}
	for _, x := range base.rules {
		if !gone[x] {
			after.rules = append(after.rules, x)
		}
	}
	for _, x := range b.add {
		after.rules = append(after.rules, LiveRule{Chain: x.Chain, Key: x.Key})
	}
	return after, nil
}

// resolveHandles fills in the handles of the rules of del that have none,
// from a listing of the table: the rule of the same chain and key.
func resolveHandles(c *netlink.Conn, del []LiveRule) error {
	rules, _, err := dumpRules(c)
	if err != nil {
		return err
	}
	type ck struct{ chain, key string }
	handles := make(map[ck]uint64, len(rules))
	for _, x := range rules {
		if _, ok := handles[ck{x.Chain, x.Key}]; !ok {
			handles[ck{x.Chain, x.Key}] = x.Handle
		}
	}
	for i, x := range del {
		if x.Handle != 0 {
			continue
		}
		h, ok := handles[ck{x.Chain, x.Key}]
		if !ok {
			return fmt.Errorf("delete rule %q of chain %s: no longer in the table", x.Key, x.Chain)
		}
		del[i].Handle = h
	}
	return nil
}

// summary is the plan's word for a whole ruleset: "router mode, 2
// forwards: 27 rules".
func summary(in Input, rs *Ruleset) string {
	fs := "forwards"
	if len(in.Forwards) == 1 {
		fs = "forward"
	}
	return fmt.Sprintf("%s mode, %d %s: %s", in.Mode, len(in.Forwards), fs, rules(len(rs.Rules)))
}

// rules is "1 rule", "2 rules".
func rules(n int) string {
	if n == 1 {
		return "1 rule"
	}
	return fmt.Sprintf("%d rules", n)
}

// groupOfKey is the group a rule's key names ("forward tcp/8080", "box"),
// and whether the key is one of MailFountain's.
func groupOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, commentPrefix)
	if !ok {
		return "", false
	}
	g, _, ok := strings.Cut(rest, ": ")
	return g, ok
}
