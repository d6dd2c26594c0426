package schema

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Kinds of resources. A resource is one thing of the document that can be
// created, changed or removed on its own; plans and `mfapply diff` speak of
// them.
const (
	KindSystem      = "system"
	KindAdmin       = "admin"
	KindNetwork     = "network"
	KindWAN         = "wan"
	KindLAN         = "lan"
	KindDHCP        = "dhcp"
	KindForward     = "forward"
	KindSMTP        = "smtp"
	KindRelay       = "relay"
	KindManager     = "manager"
	KindDomain      = "domain"
	KindDNSHost     = "dns-host"
	KindAccount     = "account"
	KindAlias       = "alias"
	KindRedirection = "redirection"
	KindMailing     = "mailing"
)

// Resource changes op.
const (
	OpCreate = "+"
	OpUpdate = "~"
	OpDelete = "-"
)

// kindOrder ranks kinds so that a parent comes before what depends on it:
// a domain before its accounts, an account before its aliases, accounts
// before the redirections and mailings that name them, domains before the
// managers that manage them.
var kindOrder = []string{
	KindSystem, KindAdmin, KindNetwork, KindWAN, KindLAN, KindDHCP, KindForward,
	KindSMTP, KindRelay, KindDomain, KindDNSHost, KindAccount, KindAlias,
	KindRedirection, KindMailing, KindManager,
}

func kindRank(kind string) int {
	if i := slices.Index(kindOrder, kind); i >= 0 {
		return i
	}
	return len(kindOrder)
}

// DirectoryKinds lists the kinds the mail directory owns: what the
// accounts reconciler converges into the data store.
func DirectoryKinds() []string {
	return []string{KindDomain, KindAccount, KindAlias, KindRedirection, KindMailing, KindManager}
}

// IsDirectoryKind reports whether kind is one of DirectoryKinds.
func IsDirectoryKind(kind string) bool {
	switch kind {
	case KindDomain, KindAccount, KindAlias, KindRedirection, KindMailing, KindManager:
		return true
	}
	return false
}

// IsSecretField reports whether a field holds a secret. Resources never
// carry a secret itself, only a digest that changes with it, and a diff
// names the field without its value.
func IsSecretField(field string) bool { return field == "password" }

// Resource is one thing of the document in a form that compares: its kind,
// its name (unique within the kind, e.g. "rene.ricard@ma-societe.fr") and
// its fields as text. Lists whose order does not matter are sorted; secret
// fields (IsSecretField) hold a digest, never the secret.
type Resource struct {
	Kind   string            `json:"kind"`
	Name   string            `json:"name"`
	Fields map[string]string `json:"fields"`
}

// ResourceChange is one difference between two lists of resources.
type ResourceChange struct {
	Op      string    `json:"op"` // OpCreate, OpUpdate or OpDelete
	Kind    string    `json:"kind"`
	Name    string    `json:"name"`
	Changed []string  `json:"changed,omitempty"` // updates: the fields that differ, sorted
	From    *Resource `json:"from,omitempty"`    // nil for a creation
	To      *Resource `json:"to,omitempty"`      // nil for a deletion
}

// Resources lists every resource of st, kind by kind (parents first), each
// kind in the document's order. The order is deterministic: the same
// document gives the same list.
func Resources(st *State) []Resource {
	if st == nil {
		return nil
	}
	n := 10 + len(st.Network.Forwards) + len(st.Managers)
	for i := range st.Domains {
		d := &st.Domains[i]
		n += 1 + len(d.DNS.Hosts) + len(d.Accounts) + len(d.Redirections) + len(d.Mailings)
		for j := range d.Accounts {
			n += len(d.Accounts[j].Aliases)
		}
	}
	rs := make([]Resource, 0, n)
	add := func(kind, name string, fields map[string]string) {
		rs = append(rs, Resource{Kind: kind, Name: name, Fields: fields})
	}

	sys := &st.System
	add(KindSystem, KindSystem, map[string]string{
		"model": sys.Model, "hostname": sys.Hostname, "timezone": sys.Timezone, "language": sys.Language,
	})
	add(KindAdmin, KindAdmin, map[string]string{"password": secretDigest(sys.Admin.PasswordHash)})

	net := &st.Network
	add(KindNetwork, KindNetwork, map[string]string{"mode": net.Mode})
	add(KindWAN, KindWAN, map[string]string{
		"method":        net.WAN.Method,
		"address":       net.WAN.Address,
		"gateway":       net.WAN.Gateway,
		"dns":           strings.Join(net.WAN.DNS, ","), // in order: the first is asked first
		"username":      net.WAN.Username,
		"password_file": net.WAN.PasswordFile,
		"password":      secretDigest(net.WAN.Password),
	})
	add(KindLAN, KindLAN, map[string]string{"address": net.LAN.Address})
	var reserved []string
	for _, r := range net.DHCP.Reservations {
		reserved = append(reserved, strings.ToLower(r.MAC)+"="+r.Address+"("+r.Name+")")
	}
	add(KindDHCP, KindDHCP, map[string]string{
		"enabled": strconv.FormatBool(net.DHCP.Enabled), "start": net.DHCP.Start, "end": net.DHCP.End,
		"lease_time": net.DHCP.LeaseTime, "reservations": strings.Join(reserved, ","),
	})
	for _, f := range net.Forwards {
		add(KindForward, f.Protocol+"/"+strconv.Itoa(f.Port), map[string]string{
			"to": f.To, "to_port": strconv.Itoa(f.ToPort),
		})
	}

	add(KindSMTP, KindSMTP, map[string]string{
		"mode": st.SMTP.Mode, "legacy_plain_auth": strconv.FormatBool(st.SMTP.LegacyPlainAuth),
	})
	if r := st.SMTP.Relay; r != nil {
		add(KindRelay, KindRelay, map[string]string{
			"host":          r.Host,
			"port":          strconv.Itoa(r.Port),
			"username":      r.Username,
			"password_file": r.PasswordFile,
			"password":      secretDigest(r.Password),
		})
	}

	// Kind by kind, in kindOrder, each in the document's order: already
	// in order, no sort needed (Resources runs on every plan).
	for i := range st.Domains {
		d := &st.Domains[i]
		add(KindDomain, d.Name, map[string]string{
			"language":  d.Language,
			"delegated": strconv.FormatBool(d.DNS.Delegated),
		})
	}
	for i := range st.Domains {
		d := &st.Domains[i]
		labels := make([]string, 0, len(d.DNS.Hosts))
		for label := range d.DNS.Hosts {
			labels = append(labels, label)
		}
		sort.Strings(labels)
		for _, label := range labels {
			name := d.Name
			if label != "@" {
				name = label + "." + d.Name
			}
			add(KindDNSHost, name, map[string]string{"address": d.DNS.Hosts[label]})
		}
	}
	for i := range st.Domains {
		d := &st.Domains[i]
		for j := range d.Accounts {
			a := &d.Accounts[j]
			add(KindAccount, a.ID+"@"+d.Name, map[string]string{
				"name":     a.Name,
				"password": secretDigest(a.PasswordHash),
			})
		}
	}
	for i := range st.Domains {
		d := &st.Domains[i]
		for j := range d.Accounts {
			a := &d.Accounts[j]
			for _, alias := range a.Aliases {
				add(KindAlias, alias+"@"+d.Name, map[string]string{"account": a.ID})
			}
		}
	}
	for i := range st.Domains {
		d := &st.Domains[i]
		for _, r := range d.Redirections {
			to := make([]string, len(r.To))
			for k, t := range r.To {
				to[k] = FullAddress(t, d.Name)
			}
			// In order: the order is the document's, and is kept.
			add(KindRedirection, r.Address+"@"+d.Name, map[string]string{"to": strings.Join(to, ",")})
		}
	}
	for i := range st.Domains {
		d := &st.Domains[i]
		for _, m := range d.Mailings {
			add(KindMailing, m.Name+"@"+d.Name, map[string]string{
				"display_name": m.DisplayName,
				"description":  m.Description,
				"confirm":      strconv.FormatBool(m.Confirm),
				"replies_to":   m.RepliesTo,
				"editors":      setText(m.Editors),
				"senders":      setText(m.Senders),
			})
		}
	}
	for _, m := range st.Managers {
		add(KindManager, m.Login, map[string]string{
			"password": secretDigest(m.PasswordHash),
			"domains":  setText(m.Domains),
		})
	}
	return rs
}

// FullAddress turns a redirection target into a full address: a name
// alone is an account or alias of domain.
func FullAddress(target, domain string) string {
	target = strings.ToLower(target)
	if strings.Contains(target, "@") {
		return target
	}
	return target + "@" + domain
}

// secretDigest stands for a secret in a resource: equal secrets give equal
// digests, and the digest is all a plan or a diff could show.
func secretDigest(s string) string {
	if s == "" {
		return ""
	}
	// Built on the stack, one allocation: it runs for every account of
	// every plan.
	var in [256]byte
	sum := sha256.Sum256(append(append(in[:0], "mailfountain resource secret\x00"...), s...))
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	var b strings.Builder
	b.Grow(len("sha256:") + len(hx))
	b.WriteString("sha256:")
	b.Write(hx[:])
	return b.String()
}

// setText encodes a list whose order does not matter.
func setText(l []string) string {
	if len(l) == 0 {
		return ""
	}
	s := slices.Clone(l)
	sort.Strings(s)
	return strings.Join(slices.Compact(s), ",")
}

// compareNames orders names of one kind: addresses by domain, then by the
// part before the @; other names as text.
func compareNames(a, b string) int {
	ad, bd := "", ""
	al, bl := a, b
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		al, ad = a[:i], a[i+1:]
	}
	if i := strings.LastIndexByte(b, '@'); i >= 0 {
		bl, bd = b[:i], b[i+1:]
	}
	if c := strings.Compare(ad, bd); c != 0 {
		return c
	}
	return strings.Compare(al, bl)
}

// compareKinds orders kinds parents first; kinds unknown to this version
// come last, by name.
func compareKinds(a, b string) int {
	if ra, rb := kindRank(a), kindRank(b); ra != rb {
		return ra - rb
	}
	return strings.Compare(a, b)
}

// byName indexes resources by kind, then name, to their index in the
// list; a name given twice counts as its first occurrence.
type byName map[string]map[string]int

func indexResources(rs []Resource) byName {
	// Resources come kind by kind: count them to size each map once.
	sizes := map[string]int{}
	for i := range rs {
		sizes[rs[i].Kind]++
	}
	idx := make(byName, len(sizes))
	for kind, n := range sizes {
		idx[kind] = make(map[string]int, n)
	}
	for i := range rs {
		names := idx[rs[i].Kind]
		if _, dup := names[rs[i].Name]; !dup {
			names[rs[i].Name] = i
		}
	}
	return idx
}

// DiffResources lists what changes from one list of resources to another.
// Deletions come first, children before their parents (an alias before its
// account, an account before its domain); then creations and updates,
// parents before their children; within a kind, by domain and then name.
// A resource named twice in a list counts once, as its first occurrence.
func DiffResources(from, to []Resource) []ResourceChange {
	old := indexResources(from)
	matched := make([]bool, len(from))
	var created map[resourceKey]bool // to skip a creation named twice
	var dels, puts []ResourceChange
	for i := range to {
		r := &to[i]
		j, ok := old[r.Kind][r.Name]
		if !ok {
			k := resourceKey{r.Kind, r.Name}
			if created[k] {
				continue
			}
			if created == nil {
				created = map[resourceKey]bool{}
			}
			created[k] = true
			puts = append(puts, ResourceChange{Op: OpCreate, Kind: r.Kind, Name: r.Name, To: r})
			continue
		}
		if matched[j] {
			continue // named twice in to
		}
		matched[j] = true
		o := &from[j]
		if changed := changedFields(o.Fields, r.Fields); len(changed) > 0 {
			puts = append(puts, ResourceChange{Op: OpUpdate, Kind: r.Kind, Name: r.Name, Changed: changed, From: o, To: r})
		}
	}
	for _, names := range old {
		for _, j := range names {
			if !matched[j] {
				o := &from[j]
				dels = append(dels, ResourceChange{Op: OpDelete, Kind: o.Kind, Name: o.Name, From: o})
			}
		}
	}
	slices.SortFunc(dels, func(a, b ResourceChange) int {
		return cmp.Or(-compareKinds(a.Kind, b.Kind), compareNames(a.Name, b.Name))
	})
	slices.SortFunc(puts, func(a, b ResourceChange) int {
		return cmp.Or(compareKinds(a.Kind, b.Kind), compareNames(a.Name, b.Name))
	})
	return append(dels, puts...)
}

type resourceKey struct{ kind, name string }

// changedFields lists, sorted, the fields whose values differ; a missing
// field is the same as an empty one.
func changedFields(a, b map[string]string) []string {
	var changed []string
	inB := 0 // keys of a that b has
	for k, v := range a {
		w, ok := b[k]
		if ok {
			inB++
		}
		if w != v {
			changed = append(changed, k)
		}
	}
	if inB < len(b) { // b has keys that a lacks
		for k, v := range b {
			if _, ok := a[k]; !ok && v != "" {
				changed = append(changed, k)
			}
		}
	}
	sort.Strings(changed)
	return changed
}
