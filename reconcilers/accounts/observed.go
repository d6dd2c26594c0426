package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strings"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// Reading a directory of ten thousand accounts takes a tenth of a second,
// and every edit is planned twice (plan, then apply checks the plan). So
// the reconciler keeps its last observation and answers Observe from it
// while the store's directory generation is the same: no process changed
// the directory through a store since (the generation is a counter that
// every directory write increments in its own transaction). After its own
// Apply, it updates the observation with what it wrote (the planned
// domains are then as desired) instead of reading everything again.
//
// Changes made to the database behind the store's back (the sqlite3 shell,
// a restored file) do not move the generation: that is drift, and the
// periodic resync finds it, because it makes the engine Forget every
// observation first. A failed Apply, part of a plan applied, or another
// write between the observation and the Apply, forgets it too.
//
// The directory is kept in groups, one per domain (and one for the
// managers), each with a digest that does not depend on the order of its
// resources. Plan compares digests and diffs only the groups that differ,
// which for an edit of one account is one domain of fifty.

// digest is the sum, lane by lane modulo 2^64, of the SHA-256 of each
// resource's canonical encoding: the same resources in any order give the
// same digest, and groups' digests add up to the directory's.
type digest [4]uint64

func (d *digest) add(o digest) {
	for i := range d {
		d[i] += o[i]
	}
}

// resourceDigest is the digest of one resource: kind, name, then its
// non-empty fields sorted by name (a missing field is the same as an empty
// one, as for schema.DiffResources), each string preceded by its length.
func resourceDigest(r *schema.Resource, buf []byte, keys []string) (digest, []byte, []string) {
	buf = buf[:0]
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	str(r.Kind)
	str(r.Name)
	keys = keys[:0]
	for k, v := range r.Fields {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(r.Fields[k])
	}
	sum := sha256.Sum256(buf)
	var d digest
	for i := range d {
		d[i] = binary.BigEndian.Uint64(sum[8*i:])
	}
	return d, buf, keys
}

// group is the resources of one domain, or of the managers.
type group struct {
	res []schema.Resource
	sum digest
}

// groupOf names the group of a resource: its domain, or "" for a manager.
func groupOf(r *schema.Resource) string {
	switch r.Kind {
	case schema.KindDomain:
		return r.Name
	case schema.KindManager:
		return ""
	}
	if i := strings.LastIndexByte(r.Name, '@'); i >= 0 {
		return r.Name[i+1:]
	}
	return r.Name
}

// groups sorts resources into groups, each in the resources' order.
func groups(rs []schema.Resource) map[string]*group {
	gs := map[string]*group{}
	var buf []byte
	var keys []string
	for i := range rs {
		name := groupOf(&rs[i])
		g := gs[name]
		if g == nil {
			g = &group{}
			gs[name] = g
		}
		g.res = append(g.res, rs[i])
		var d digest
		d, buf, keys = resourceDigest(&rs[i], buf, keys)
		g.sum.add(d)
	}
	return gs
}

// live is the directory as observed in the store.
type live struct {
	gen         uint64 // the store's directory generation before the read
	groups      map[string]*group
	fingerprint string
}

func (l *live) Fingerprint() string { return l.fingerprint }

func newLive(gen uint64, rs []schema.Resource) *live {
	return withGroups(gen, groups(rs))
}

func withGroups(gen uint64, gs map[string]*group) *live {
	var total digest
	for _, g := range gs {
		total.add(g.sum)
	}
	var b [32]byte
	for i, x := range total {
		binary.BigEndian.PutUint64(b[8*i:], x)
	}
	return &live{gen: gen, groups: gs, fingerprint: hex.EncodeToString(b[:])}
}

// fingerprint is that of a directory holding rs.
func fingerprint(rs []schema.Resource) string { return newLive(0, rs).fingerprint }

// patch is what a plan changes: the groups as desired (nil for a group
// removed), to make the observation planned from into the directory after
// the plan's changes.
type patch struct {
	base    *live
	groups  map[string]*group
	changes int
}

// changedGroups returns the observed and desired resources of the groups
// whose digests differ, and the patch that applying their differences
// makes.
func (l *live) changedGroups(want map[string]*group) (from, to []schema.Resource, pt *patch) {
	pt = &patch{base: l, groups: map[string]*group{}}
	for name, g := range want {
		if o := l.groups[name]; o == nil || o.sum != g.sum {
			if o != nil {
				from = append(from, o.res...)
			}
			to = append(to, g.res...)
			pt.groups[name] = g
		}
	}
	for name, o := range l.groups {
		if want[name] == nil {
			from = append(from, o.res...)
			pt.groups[name] = nil
		}
	}
	return from, to, pt
}

// reuse returns the last observation if the directory generation is still
// gen, else nil.
func (r *Reconciler) reuse(gen uint64) *live {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.observed != nil && r.observed.gen == gen {
		return r.observed
	}
	return nil
}

func (r *Reconciler) keep(l *live) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed = l
}

// Forget makes the next Observe read the directory again.
func (r *Reconciler) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed = nil
}

// applied updates the kept observation after Apply wrote changes (ok) or
// failed: when they are a whole plan made from it and nothing else changed
// the directory since, the planned groups are now as desired; otherwise
// the observation is forgotten.
func (r *Reconciler) applied(ctx context.Context, changes []reconcilers.Change, ok bool) {
	var pt *patch
	for i, c := range changes {
		p, _ := c.Payload.(*payload)
		if p == nil || (i > 0 && p.patch != pt) {
			pt = nil
			break
		}
		pt = p.patch
	}
	gen, err := r.st.DirectoryGeneration(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok || err != nil || pt == nil || pt.changes != len(changes) || r.observed != pt.base || gen != pt.base.gen+1 {
		r.observed = nil
		return
	}
	gs := make(map[string]*group, len(pt.base.groups)+len(pt.groups))
	for name, g := range pt.base.groups {
		gs[name] = g
	}
	for name, g := range pt.groups {
		if g == nil {
			delete(gs, name)
		} else {
			gs[name] = g
		}
	}
	r.observed = withGroups(gen, gs)
}

// desiredGroups returns the groups of desired's directory resources. A
// domain's group is kept, by a hash of the domain's content, while the
// last two plans used it: an edit of one account builds one domain's
// resources again, not fifty.
func (r *Reconciler) desiredGroups(desired *schema.State) map[string]*group {
	gs := groups(directoryResources(&schema.State{Managers: desired.Managers}))
	r.mu.Lock()
	r.plans++
	plans := r.plans
	r.mu.Unlock()
	for i := range desired.Domains {
		d := &desired.Domains[i]
		key := domainKey(d)
		r.mu.Lock()
		m := r.memo[key]
		if m != nil {
			m.used = plans
		}
		r.mu.Unlock()
		if m == nil {
			g := groups(directoryResources(&schema.State{Domains: []schema.Domain{*d}}))[d.Name]
			if g == nil {
				g = &group{}
			}
			m = &memoGroup{g: g, used: plans}
			r.mu.Lock()
			r.memo[key] = m
			r.mu.Unlock()
		}
		if o := gs[d.Name]; o != nil { // a domain named twice: one group
			merged := &group{res: append(append([]schema.Resource(nil), o.res...), m.g.res...), sum: o.sum}
			merged.sum.add(m.g.sum)
			gs[d.Name] = merged
			continue
		}
		gs[d.Name] = m.g
	}
	r.mu.Lock()
	for k, m := range r.memo {
		if m.used+1 < r.plans {
			delete(r.memo, k)
		}
	}
	r.mu.Unlock()
	return gs
}

// memoGroup is a domain's group and the plan that last used it.
type memoGroup struct {
	g    *group
	used uint64
}

// domainKey hashes every field of a domain, each string preceded by its
// length and each list by its count (TestDomainKeyCoversEveryField keeps
// it so when the schema grows).
func domainKey(d *schema.Domain) [32]byte {
	h := sha256.New()
	buf := make([]byte, 0, 4096)
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
		if len(buf) > 3072 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	n := func(x int) { buf = binary.AppendUvarint(buf, uint64(x)) }
	flag := func(b bool) {
		if b {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
	}
	strs := func(l []string) {
		n(len(l))
		for _, s := range l {
			str(s)
		}
	}
	str(d.Name)
	str(d.Language)
	flag(d.DNS.Delegated)
	hosts := make([]string, 0, len(d.DNS.Hosts))
	for k := range d.DNS.Hosts {
		hosts = append(hosts, k)
	}
	sort.Strings(hosts)
	n(len(hosts))
	for _, k := range hosts {
		str(k)
		str(d.DNS.Hosts[k])
	}
	strs(d.DNS.Nameservers)
	strs(d.DNS.Secondaries)
	n(d.DNS.TTL.A)
	n(d.DNS.TTL.MX)
	n(d.DNS.TTL.TXT)
	str(d.DNS.DMARC)
	n(len(d.Accounts))
	for i := range d.Accounts {
		a := &d.Accounts[i]
		str(a.ID)
		str(a.Name)
		str(a.PasswordHash)
		strs(a.Aliases)
	}
	n(len(d.Redirections))
	for _, r := range d.Redirections {
		str(r.Address)
		strs(r.To)
	}
	n(len(d.Mailings))
	for _, m := range d.Mailings {
		str(m.Name)
		str(m.DisplayName)
		str(m.Description)
		flag(m.Confirm)
		str(m.RepliesTo)
		strs(m.Editors)
		strs(m.Senders)
	}
	h.Write(buf)
	var k [32]byte
	h.Sum(k[:0])
	return k
}
