package applier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// obj and arr are a document decoded as JSON: what the mutations edit.
type (
	obj = map[string]any
	arr = []any
)

// Two valid password hashes, to change one into the other.
const (
	hashA = "$argon2id$v=19$m=65536,t=3,p=4$RcPAvFuNlpuUT+U970M7zQ$bxZA+0xiNhVN8eRP2IJOMDHV93clYw5P0s3HiBZ2yxE"
	hashB = "$argon2id$v=19$m=65536,t=3,p=4$FnXz+i5Xg1wxcNyIktuASw$y4CkN2Z5X286LstGdCAirOD9BzL5nueY+kNOLOjnOjc"
)

// tlsFiles are the files the TLS mutations switch to: another
// certificate of the same key, and the same key under another name.
type tlsFiles struct{ dir, cert2, keyCopy string }

// mutation changes one field of a document (its effective state, every
// default written out) to another valid value, with what else validity
// needs. It reports false when the document has no such field to change
// (no relay, a WAN that is not static…): another document exercises it.
type mutation func(d obj, tf tlsFiles) bool

// mutations has one entry per field of schema.Fields(): a field added to
// the schema without one fails TestEveryFieldIsAppliedOrReported.
func mutations() map[string]mutation {
	return map[string]mutation{
		"system.model": func(d obj, _ tlsFiles) bool {
			s := sec(d, "system")
			s["model"] = map[any]string{"M500": "virtual", "virtual": "M500", "S100": "S200", "S200": "S100"}[s["model"]]
			return true
		},
		"system.hostname":            setOther("system", "hostname", "mail", "smtp"),
		"system.timezone":            setOther("system", "timezone", "America/New_York", "Asia/Tokyo"),
		"system.language":            setOther("system", "language", "fr", "en"),
		"system.admin.password_hash": setOther("system.admin", "password_hash", hashA, hashB),
		"system.tls.certificate": func(d obj, tf tlsFiles) bool {
			t := sec(d, "system.tls")
			if t == nil {
				return false
			}
			t["certificate"] = tf.cert2
			return true
		},
		"system.tls.key": func(d obj, tf tlsFiles) bool {
			t := sec(d, "system.tls")
			if t == nil {
				return false
			}
			t["key"] = tf.keyCopy
			return true
		},

		"network.mode": func(d obj, _ tlsFiles) bool {
			n := sec(d, "network")
			if n["mode"] == "server" {
				n["mode"] = "router" // the static WAN stays; the LAN is apart from it
				return true
			}
			n["mode"] = "server"
			n["wan"] = obj{"method": "static", "address": "203.0.113.5/24", "gateway": "203.0.113.1", "dns": arr{"203.0.113.1"}}
			delete(n, "forwards")
			sec(d, "network.dhcp")["enabled"] = false
			return true
		},
		"network.wan.method": func(d obj, _ tlsFiles) bool {
			n := sec(d, "network")
			w := sec(d, "network.wan")
			switch {
			case n["mode"] == "server":
				return false // server mode needs its static WAN
			case w["method"] == "dhcp":
				n["wan"] = obj{"method": "static", "address": "203.0.113.5/24", "gateway": "203.0.113.1", "dns": arr{"203.0.113.1"}}
			default:
				n["wan"] = obj{"method": "dhcp"}
			}
			return true
		},
		"network.wan.address": func(d obj, _ tlsFiles) bool {
			w := sec(d, "network.wan")
			if w["method"] != "static" {
				return false
			}
			p := netip.MustParsePrefix(w["address"].(string))
			a := otherHost(p, p.Addr(), netip.MustParseAddr(w["gateway"].(string)))
			w["address"] = netip.PrefixFrom(a, p.Bits()).String()
			return true
		},
		"network.wan.gateway": func(d obj, _ tlsFiles) bool {
			w := sec(d, "network.wan")
			if w["method"] != "static" {
				return false
			}
			p := netip.MustParsePrefix(w["address"].(string))
			w["gateway"] = otherHost(p, netip.MustParseAddr(w["gateway"].(string)), p.Addr()).String()
			return true
		},
		"network.wan.dns": func(d obj, _ tlsFiles) bool {
			w := sec(d, "network.wan")
			if w["method"] != "static" {
				return false
			}
			w["dns"] = append(arr{"9.9.9.9"}, w["dns"].(arr)...)
			return true
		},
		"network.wan.username": func(d obj, _ tlsFiles) bool {
			w := sec(d, "network.wan")
			if w["method"] != "pppoe" {
				return false
			}
			w["username"] = w["username"].(string) + "-2"
			return true
		},
		"network.wan.password_file": secretFile("network.wan", "pppoe"),
		"network.wan.password":      secretInline("network.wan", "pppoe"),
		"network.lan.address": func(d obj, _ tlsFiles) bool {
			l := sec(d, "network.lan")
			l["address"] = netip.MustParseAddr(l["address"].(string)).Next().String()
			return true
		},
		"network.public_address": func(d obj, _ tlsFiles) bool {
			n := sec(d, "network")
			n["public_address"] = other(n["public_address"], "203.0.113.77", "2001:db8::77")
			return true
		},
		"network.dhcp.enabled": func(d obj, _ tlsFiles) bool {
			if sec(d, "network")["mode"] == "server" {
				return false // a router feature
			}
			h := sec(d, "network.dhcp")
			h["enabled"] = !h["enabled"].(bool)
			return true
		},
		"network.dhcp.start": dhcp(func(h obj) bool {
			h["start"] = netip.MustParseAddr(h["start"].(string)).Next().String()
			return true
		}),
		"network.dhcp.end": dhcp(func(h obj) bool {
			h["end"] = netip.MustParseAddr(h["end"].(string)).Prev().String()
			return true
		}),
		"network.dhcp.lease_time": dhcp(func(h obj) bool {
			h["lease_time"] = other(h["lease_time"], "12h", "1d")
			return true
		}),
		"network.dhcp.reservations[].mac": reservation(func(r obj) {
			r["mac"] = strings.TrimSuffix(r["mac"].(string), "0") + "e"
		}),
		"network.dhcp.reservations[].address": reservation(func(r obj) {
			r["address"] = netip.MustParseAddr(r["address"].(string)).Next().String()
		}),
		"network.dhcp.reservations[].name": reservation(func(r obj) { r["name"] = other(r["name"], "poste-1", "poste-2") }),
		"network.forwards[].port":          forward(func(f obj) { f["port"] = f["port"].(float64) + 1 }),
		"network.forwards[].protocol": forward(func(f obj) {
			f["protocol"] = map[any]string{"tcp": "udp", "udp": "tcp", "all": "tcp"}[f["protocol"]]
		}),
		"network.forwards[].to":      forward(func(f obj) { f["to"] = netip.MustParseAddr(f["to"].(string)).Next().String() }),
		"network.forwards[].to_port": forward(func(f obj) { f["to_port"] = f["to_port"].(float64) + 1 }),

		"smtp.mode": func(d obj, _ tlsFiles) bool {
			s := sec(d, "smtp")
			if s["mode"] == "relay" {
				s["mode"] = "direct" // the relay may stay, unused
				return true
			}
			s["mode"], s["relay"] = "relay", obj{"host": "relay.example.net"}
			return true
		},
		"smtp.relay.host": relay(func(r obj) { r["host"] = "other-relay.example.net" }),
		"smtp.relay.port": relay(func(r obj) { r["port"] = r["port"].(float64) + 1 }),
		"smtp.relay.username": relay(func(r obj) {
			u, _ := r["username"].(string)
			r["username"] = u + "other"
		}),
		"smtp.relay.password_file": secretFile("smtp.relay", ""),
		"smtp.relay.password":      secretInline("smtp.relay", ""),
		"smtp.legacy_plain_auth": func(d obj, _ tlsFiles) bool {
			s := sec(d, "smtp")
			s["legacy_plain_auth"] = !s["legacy_plain_auth"].(bool)
			return true
		},
		"smtp.queue.min_backoff":   setOther("smtp.queue", "min_backoff", "1m", "2m"),
		"smtp.queue.max_backoff":   setOther("smtp.queue", "max_backoff", "2h", "3h"),
		"smtp.queue.lifetime":      setOther("smtp.queue", "lifetime", "1d", "2d"),
		"smtp.queue.delay_warning": setOther("smtp.queue", "delay_warning", "0", "1h"),
		"smtp.max_message_mb": func(d obj, _ tlsFiles) bool {
			s := sec(d, "smtp")
			s["max_message_mb"] = s["max_message_mb"].(float64) + 1
			return true
		},

		"managers[].login":         manager(func(m obj) { m["login"] = m["login"].(string) + "2" }),
		"managers[].password_hash": manager(func(m obj) { m["password_hash"] = other(m["password_hash"], hashA, hashB) }),
		"managers[].domains": func(d obj, _ tlsFiles) bool {
			ms, _ := d["managers"].(arr)
			if len(ms) == 0 {
				return false
			}
			m := ms[0].(obj)
			if l := m["domains"].(arr); len(l) > 0 {
				m["domains"] = l[:len(l)-1]
			} else {
				m["domains"] = arr{d["domains"].(arr)[0].(obj)["name"]}
			}
			return true
		},

		"domains[].name": domain(func(d, dom obj) {
			old := dom["name"].(string)
			dom["name"] = "renamed-" + old
			for _, m := range list(d, "managers") {
				for i, n := range m.(obj)["domains"].(arr) {
					if n == old {
						m.(obj)["domains"].(arr)[i] = dom["name"]
					}
				}
			}
		}),
		"domains[].language":      domain(func(_, dom obj) { dom["language"] = other(dom["language"], "fr", "en") }),
		"domains[].dns.delegated": domain(func(_, dom obj) { dns := dom["dns"].(obj); dns["delegated"] = !dns["delegated"].(bool) }),
		"domains[].dns.hosts": domain(func(_, dom obj) {
			dns := dom["dns"].(obj)
			hosts, _ := dns["hosts"].(obj)
			if hosts == nil {
				hosts = obj{}
			}
			hosts["mutated"] = "192.0.2.99"
			dns["hosts"] = hosts
		}),
		"domains[].dns.nameservers": domain(func(_, dom obj) {
			dns := dom["dns"].(obj)
			dns["nameservers"] = append(arr{"ns.mutated.example"}, asArr(dns["nameservers"])...)
		}),
		"domains[].dns.secondaries": domain(func(_, dom obj) {
			dns := dom["dns"].(obj)
			dns["secondaries"] = append(arr{"192.0.2.53"}, asArr(dns["secondaries"])...)
		}),
		"domains[].dns.ttl.a":   domain(func(_, dom obj) { ttl(dom)["a"] = ttl(dom)["a"].(float64) + 60 }),
		"domains[].dns.ttl.mx":  domain(func(_, dom obj) { ttl(dom)["mx"] = ttl(dom)["mx"].(float64) + 60 }),
		"domains[].dns.ttl.txt": domain(func(_, dom obj) { ttl(dom)["txt"] = ttl(dom)["txt"].(float64) + 60 }),
		"domains[].dns.dmarc":   domain(func(_, dom obj) { dom["dns"].(obj)["dmarc"] = other(dom["dns"].(obj)["dmarc"], "none", "reject") }),

		"domains[].accounts[].id": account(func(dom, a obj) {
			old := a["id"].(string)
			a["id"] = old + "2"
			rename := func(l any) {
				for i, x := range asArr(l) {
					if x == old {
						l.(arr)[i] = a["id"]
					}
				}
			}
			for _, r := range list(dom, "redirections") {
				rename(r.(obj)["to"])
			}
			for _, m := range list(dom, "mailings") {
				m := m.(obj)
				if m["replies_to"] == old {
					m["replies_to"] = a["id"]
				}
				rename(m["editors"])
				rename(m["senders"])
			}
		}),
		"domains[].accounts[].name":          account(func(_, a obj) { a["name"] = a["name"].(string) + " (changed)" }),
		"domains[].accounts[].password_hash": account(func(_, a obj) { a["password_hash"] = other(a["password_hash"], hashA, hashB) }),
		"domains[].accounts[].aliases":       account(func(_, a obj) { a["aliases"] = append(asArr(a["aliases"]), "zz-new-alias") }),

		"domains[].redirections[].address": redirection(func(_, r obj) { r["address"] = r["address"].(string) + "2" }),
		"domains[].redirections[].to": redirection(func(dom, r obj) {
			if to := r["to"].(arr); len(to) > 1 {
				r["to"] = to[:len(to)-1]
				return
			}
			r["to"] = append(r["to"].(arr), "someone@elsewhere.example")
		}),

		"domains[].mailings[].name":         mailing(func(_, m obj) { m["name"] = m["name"].(string) + "2" }),
		"domains[].mailings[].display_name": mailing(func(_, m obj) { m["display_name"] = m["display_name"].(string) + " !" }),
		"domains[].mailings[].description":  mailing(func(_, m obj) { m["description"] = m["description"].(string) + " (changed)" }),
		"domains[].mailings[].confirm":      mailing(func(_, m obj) { m["confirm"] = !m["confirm"].(bool) }),
		"domains[].mailings[].replies_to": mailing(func(dom, m obj) {
			for _, a := range list(dom, "accounts") {
				if id := a.(obj)["id"]; id != m["replies_to"] {
					m["replies_to"] = id
					return
				}
			}
		}),
		"domains[].mailings[].editors": mailing(func(dom, m obj) { m["editors"] = otherIDs(dom, m["editors"]) }),
		"domains[].mailings[].senders": mailing(func(dom, m obj) { m["senders"] = otherIDs(dom, m["senders"]) }),
	}
}

// sec is the section at a dotted path of d, nil if absent.
func sec(d obj, path string) obj {
	cur := d
	for _, k := range strings.Split(path, ".") {
		next, _ := cur[k].(obj)
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

func list(d obj, key string) arr { return asArr(d[key]) }

func asArr(v any) arr {
	l, _ := v.(arr)
	return l
}

// other is whichever of a and b cur is not.
func other(cur any, a, b string) string {
	if cur == a {
		return b
	}
	return a
}

func setOther(path, key, a, b string) mutation {
	return func(d obj, _ tlsFiles) bool {
		s := sec(d, path)
		if s == nil {
			return false
		}
		s[key] = other(s[key], a, b)
		return true
	}
}

// otherHost is a host address of p that is neither cur nor avoid.
func otherHost(p netip.Prefix, cur, avoid netip.Addr) netip.Addr {
	for a := p.Masked().Addr().Next(); p.Contains(a); a = a.Next() {
		if a != cur && a != avoid {
			return a
		}
	}
	panic("no other host in " + p.String())
}

// secretFile and secretInline change a secret's file or inline value, or
// switch to one from the other (a secret has one or the other). method,
// when not empty, is the WAN method the secret belongs to. The files
// exist (writeTLS): the mail reconciler reads the relay's at plan.
func secretFile(path, method string) mutation {
	return func(d obj, tf tlsFiles) bool {
		s := sec(d, path)
		if s == nil || method != "" && s["method"] != method {
			return false
		}
		delete(s, "password")
		s["password_file"] = other(s["password_file"], filepath.Join(tf.dir, "one.secret"), filepath.Join(tf.dir, "two.secret"))
		return true
	}
}

func secretInline(path, method string) mutation {
	return func(d obj, _ tlsFiles) bool {
		s := sec(d, path)
		if s == nil || method != "" && s["method"] != method {
			return false
		}
		delete(s, "password_file")
		s["password"] = other(s["password"], "secret-one", "secret-two")
		return true
	}
}

func forward(f func(obj)) mutation {
	return func(d obj, _ tlsFiles) bool {
		fs := list(sec(d, "network"), "forwards")
		if len(fs) == 0 {
			return false
		}
		f(fs[0].(obj))
		return true
	}
}

// dhcp changes the DHCP server's settings of a router whose server is
// on (in server mode the server is off: they change nothing).
func dhcp(f func(obj) bool) mutation {
	return func(d obj, _ tlsFiles) bool {
		h := sec(d, "network.dhcp")
		if sec(d, "network")["mode"] == "server" || h["enabled"] != true {
			return false
		}
		return f(h)
	}
}

// reservation changes the first DHCP reservation.
func reservation(f func(obj)) mutation {
	return dhcp(func(h obj) bool {
		rs := list(h, "reservations")
		if len(rs) == 0 {
			return false
		}
		f(rs[0].(obj))
		return true
	})
}

func relay(f func(obj)) mutation {
	return func(d obj, _ tlsFiles) bool {
		r := sec(d, "smtp.relay")
		if r == nil {
			return false
		}
		f(r)
		return true
	}
}

func manager(f func(obj)) mutation {
	return func(d obj, _ tlsFiles) bool {
		ms := list(d, "managers")
		if len(ms) == 0 {
			return false
		}
		f(ms[0].(obj))
		return true
	}
}

// ttl is the dns.ttl section of a domain.
func ttl(dom obj) obj { return dom["dns"].(obj)["ttl"].(obj) }

func domain(f func(d, dom obj)) mutation {
	return func(d obj, _ tlsFiles) bool {
		ds := list(d, "domains")
		if len(ds) == 0 {
			return false
		}
		f(d, ds[0].(obj))
		return true
	}
}

// account changes the first account of the first domain.
func account(f func(dom, a obj)) mutation {
	return domainItem("accounts", f)
}

func redirection(f func(dom, r obj)) mutation { return domainItem("redirections", f) }
func mailing(f func(dom, m obj)) mutation     { return domainItem("mailings", f) }

func domainItem(key string, f func(dom, item obj)) mutation {
	return func(d obj, _ tlsFiles) bool {
		for _, dom := range list(d, "domains") {
			if items := list(dom.(obj), key); len(items) > 0 {
				f(dom.(obj), items[0].(obj))
				return true
			}
		}
		return false
	}
}

// otherIDs drops the last of a list of account ids, or adds the domain's
// first account to an empty one.
func otherIDs(dom obj, ids any) arr {
	if l := asArr(ids); len(l) > 0 {
		return l[:len(l)-1]
	}
	return arr{list(dom, "accounts")[0].(obj)["id"]}
}

// effective writes st as a document: its canonical JSON, which YAML
// reads, without the nulls of empty lists and maps (the schema wants a
// list or nothing).
func effective(t *testing.T, st *schema.State) obj {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var d obj
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var clean func(v any)
	clean = func(v any) {
		switch v := v.(type) {
		case obj:
			for k, x := range v {
				if x == nil {
					delete(v, k)
					continue
				}
				clean(x)
			}
		case arr:
			for _, x := range v {
				clean(x)
			}
		}
	}
	clean(d)
	return d
}

func documentOf(t *testing.T, d obj) []schema.Source {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return []schema.Source{{Name: "state.yaml", Data: b, Mode: 0o600}}
}

// writeTLS writes a key, two certificates of it and a copy of the key.
func writeTLS(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i, name := range []string{"cert.pem", "cert2.pem"} {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)),
			Subject:      pkix.Name{CommonName: "box.atelier.example"},
			DNSNames:     []string{"box.atelier.example"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		write(name, "CERTIFICATE", der)
	}
	write("key.pem", "PRIVATE KEY", kder)
	for _, name := range []string{"one.secret", "two.secret"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tlsFiles{dir: dir, cert2: filepath.Join(dir, "cert2.pem"), keyCopy: write("key-copy.pem", "PRIVATE KEY", kder)}
}

// keys turns a changed path into its field: domains[a.example].name →
// domains[].name.
var keys = regexp.MustCompile(`\[[^\]]*\]`)

// TestEveryFieldIsAppliedOrReported changes, one at a time, every field of
// three documents (the manual's example, a router and a server) to another
// valid value, and plans it against the original applied: the reconciler
// that owns the field plans a change, or the plan lists the field as not
// applied, or the field is one that no reconciler reads. Every field of
// the schema must be changed in at least one of the documents.
func TestEveryFieldIsAppliedOrReported(t *testing.T) {
	tf := writeTLS(t)
	listed := func(us []reconcilers.Unowned, field string) bool {
		return slices.ContainsFunc(us, func(u reconcilers.Unowned) bool {
			return field == u.Path || strings.HasPrefix(field, u.Path+".") || strings.HasPrefix(field, u.Path+"[")
		})
	}
	muts := mutations()
	changed := map[string][]string{} // field -> documents where it was changed

	for _, doc := range []struct{ name, path string }{
		{"ma-societe", "../../examples/ma-societe.yaml"},
		{"router", "testdata/router.yaml"},
		{"server", "../../examples/server-mode.yaml"},
	} {
		t.Run(doc.name, func(t *testing.T) {
			ctx := context.Background()
			data, err := os.ReadFile(doc.path)
			if err != nil {
				t.Fatal(err)
			}
			data = []byte(strings.ReplaceAll(string(data), "/etc/mailfountain/tls", tf.dir))
			a := openTest(t, t.TempDir())
			orig := []schema.Source{{Name: doc.path, Data: data, Mode: 0o600}}
			p, err := a.Plan(ctx, orig)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Apply(ctx, p, "original", "test"); err != nil {
				t.Fatal(err)
			}
			// The document written out with its defaults is the same
			// document: what the mutations start from.
			base := effective(t, p.State)
			if same, err := a.Plan(ctx, documentOf(t, base)); err != nil || same.NewVersion || !same.Engine.Empty() {
				t.Fatalf("the effective document is not the original: %v", err)
			}

			for _, field := range schema.Fields() {
				mutate, ok := muts[field]
				if !ok {
					t.Errorf("%s: no mutation: add one to mutations()", field)
					continue
				}
				d := effective(t, p.State)
				if !mutate(d, tf) {
					continue
				}
				changed[field] = append(changed[field], doc.name)
				mp, err := a.Plan(ctx, documentOf(t, d))
				if err != nil {
					t.Errorf("%s: the changed document: %v", field, err)
					continue
				}
				if !mp.NewVersion {
					t.Errorf("%s: the mutation changed nothing", field)
					continue
				}
				unapplied := slices.ContainsFunc(mp.Unapplied, func(u reconcilers.UnappliedField) bool {
					return keys.ReplaceAllString(u.Path, "[]") == field
				})
				owner := a.engine.Owner(field)
				// A reconciler without its hardware (no box here) lists
				// its fields as not applied instead of planning them.
				skipped := slices.ContainsFunc(mp.Unapplied, func(u reconcilers.UnappliedField) bool {
					return keys.ReplaceAllString(u.Path, "[]") == field && u.Section == owner && u.Reason == reconcilers.ReasonNoHardware
				})
				switch {
				case skipped:
				case owner != "":
					if !slices.ContainsFunc(mp.Engine.Steps, func(s reconcilers.Step) bool { return s.Reconciler == owner && len(s.Changes) > 0 }) {
						t.Errorf("%s: owned by %s, which plans no change: %+v", field, owner, mp.Engine.Steps)
					}
					if unapplied {
						t.Errorf("%s: owned by %s, and listed as not applied: %v", field, owner, mp.Unapplied)
					}
				case listed(reconcilers.NotApplied(), field):
					if !unapplied {
						t.Errorf("%s: not applied yet, and the plan does not say so: %v", field, mp.Unapplied)
					}
				case listed(reconcilers.ReadByNone(), field):
				default:
					t.Errorf("%s: no owner and in no list", field)
				}
			}
		})
	}
	for _, field := range schema.Fields() {
		if len(changed[field]) == 0 {
			t.Errorf("%s: changed in no document: give it a place in one of them", field)
		}
	}
	if testing.Verbose() {
		for _, field := range schema.Fields() {
			fmt.Printf("%-40s %v\n", field, changed[field])
		}
	}
}
