package schema

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameThroughCache checks that loading srcs through a Cache gives what
// Load gave (st, err): with a cold cache, with one that holds base's
// domains, and with one that holds srcs' own. The tests that load through
// load(t, ...) all check it.
func sameThroughCache(t *testing.T, srcs []Source, st *State, err error) {
	t.Helper()
	warm := NewCache()
	if _, werr := warm.Load([]Source{{Name: "doc0.yaml", Data: []byte(base), Mode: 0o600}}); werr != nil {
		t.Fatalf("base through the cache: %v", werr)
	}
	self := NewCache()
	self.Load(srcs)
	for name, c := range map[string]*Cache{"cold": NewCache(), "warm with base": warm, "warm with itself": self} {
		got, gerr := c.Load(srcs)
		if msg := differ(st, err, got, gerr); msg != "" {
			t.Errorf("through a %s cache: %s", name, msg)
		}
	}
}

// differ says how two loads' results differ, or "" when they are the same.
func differ(st1 *State, err1 error, st2 *State, err2 error) string {
	switch {
	case (err1 == nil) != (err2 == nil):
		return fmt.Sprintf("error %v, want %v", err2, err1)
	case err1 != nil:
		var e1, e2 Errors
		if !errors.As(err1, &e1) || !errors.As(err2, &e2) {
			return fmt.Sprintf("errors of types %T and %T", err1, err2)
		}
		if err1.Error() != err2.Error() {
			return fmt.Sprintf("errors\n%v\nwant\n%v", err2, err1)
		}
		if !reflect.DeepEqual(e1, e2) {
			return "errors differ in their fields"
		}
	case !reflect.DeepEqual(st1, st2):
		return fmt.Sprintf("state\n%+v\nwant\n%+v", st2, st1)
	}
	return ""
}

// editable is a state document to edit at random: a model of it, written
// out as YAML in a few styles.
type editable struct {
	language, model string
	managers        []string // each manages the first domain
	domains         []domainModel
}

type domainModel struct {
	name, language string
	flow           bool // written as one flow mapping
	comment        bool // preceded by a comment line
	accounts       []accountModel
	mailing        bool
}

type accountModel struct {
	id, name string
	aliases  []string
}

func (c *editable) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "system:\n  model: %s\n  language: %s\n", c.model, c.language)
	b.WriteString("network: {mode: router, wan: {method: dhcp}}\nsmtp:\n  mode: direct\n")
	if len(c.managers) > 0 {
		b.WriteString("managers:\n")
		for _, m := range c.managers {
			first := "nowhere.example"
			if len(c.domains) > 0 {
				first = c.domains[0].name
			}
			fmt.Fprintf(&b, "  - {login: %s, domains: [%s]}\n", m, first)
		}
	}
	b.WriteString("domains:\n")
	for _, d := range c.domains {
		if d.comment {
			b.WriteString("# ---\n")
		}
		if d.flow {
			var accs []string
			for _, a := range d.accounts {
				accs = append(accs, fmt.Sprintf("{id: %s, name: %q, aliases: [%s]}", a.id, a.name, strings.Join(a.aliases, ", ")))
			}
			fmt.Fprintf(&b, "  - {name: %s, accounts: [%s]}\n", d.name, strings.Join(accs, ", "))
			continue
		}
		fmt.Fprintf(&b, "  - name: %s\n", d.name)
		if d.language != "" {
			fmt.Fprintf(&b, "    language: %s\n", d.language)
		}
		b.WriteString("    accounts:\n")
		for _, a := range d.accounts {
			fmt.Fprintf(&b, "      - id: %s\n        name: %q\n", a.id, a.name)
			if len(a.aliases) > 0 {
				fmt.Fprintf(&b, "        aliases: [%s]\n", strings.Join(a.aliases, ", "))
			}
		}
		if d.mailing && len(d.accounts) > 0 {
			fmt.Fprintf(&b, "    mailings:\n      - name: news\n        editors: [%s]\n", d.accounts[0].id)
		}
	}
	return b.String()
}

func newEditable(rng *rand.Rand) *editable {
	c := &editable{language: "fr", model: "M500"}
	for i := range 4 {
		d := domainModel{name: fmt.Sprintf("d%d.example", i), flow: i == 3, mailing: i%2 == 0}
		for j := range 5 {
			d.accounts = append(d.accounts, accountModel{id: fmt.Sprintf("u%d", j), name: fmt.Sprintf("User %d", j), aliases: []string{fmt.Sprintf("a%d", j)}})
		}
		c.domains = append(c.domains, d)
	}
	return c
}

// edit changes c at random: mostly what an admin does (names, accounts,
// domains), sometimes a mistake.
func (c *editable) edit(rng *rand.Rand, k int) {
	if len(c.domains) == 0 {
		c.domains = append(c.domains, domainModel{name: fmt.Sprintf("new%d.example", k)})
	}
	d := &c.domains[rng.IntN(len(c.domains))]
	switch rng.IntN(14) {
	case 0, 1, 2:
		if len(d.accounts) > 0 {
			d.accounts[rng.IntN(len(d.accounts))].name = fmt.Sprintf("Edited %d", k)
		}
	case 3:
		d.accounts = append(d.accounts, accountModel{id: fmt.Sprintf("n%d", k), name: "New"})
	case 4:
		if len(d.accounts) > 1 {
			i := rng.IntN(len(d.accounts))
			d.accounts = append(d.accounts[:i:i], d.accounts[i+1:]...)
		}
	case 5: // an alias that is an account's id: a rule error
		if len(d.accounts) > 1 {
			d.accounts[0].aliases = append(d.accounts[0].aliases, d.accounts[1].id)
		}
	case 6: // a domain twice
		d.name = c.domains[0].name
	case 7:
		c.language = map[string]string{"fr": "en", "en": "fr"}[c.language]
	case 8:
		c.model = map[string]string{"M500": "S200", "S200": "M500"}[c.model]
	case 9:
		c.managers = append(c.managers, fmt.Sprintf("m%d", k))
	case 10:
		i, j := rng.IntN(len(c.domains)), rng.IntN(len(c.domains))
		c.domains[i], c.domains[j] = c.domains[j], c.domains[i]
	case 11:
		if len(c.domains) > 1 {
			i := rng.IntN(len(c.domains))
			c.domains = append(c.domains[:i:i], c.domains[i+1:]...)
		}
	case 12: // a schema error
		if len(d.accounts) > 0 {
			d.accounts[0].id = "Bad Id"
		}
	case 13:
		d.flow, d.comment = !d.flow, !d.comment
		if rng.IntN(2) == 0 {
			d.language = "en"
		}
	}
}

// mangle changes the text of doc at random, as a slip of the keyboard
// would, or in ways that the splitting into parts must notice.
func mangle(rng *rand.Rand, doc string) string {
	lines := strings.SplitAfter(doc, "\n")
	i := rng.IntN(len(lines))
	switch rng.IntN(10) {
	case 0:
		lines[i] = "# a comment\n" + lines[i]
	case 1:
		lines[i] = "\t" + lines[i]
	case 2:
		lines[i] = " " + lines[i]
	case 3:
		lines[i] = strings.TrimPrefix(lines[i], " ")
	case 4:
		lines[i] = "---\n" + lines[i]
	case 5:
		return strings.Replace(doc, "aliases: [a1]", "aliases: &x [a1]", 1) + "managers: *x\n"
	case 6:
		lines = lines[:i]
	case 7:
		lines[i] = strings.Replace(lines[i], ": ", ":", 1)
	case 8:
		lines[i] = "\n" + lines[i]
	case 9:
		lines[i] = strings.Replace(lines[i], "\"", "", 1)
	}
	return strings.Join(lines, "")
}

// TestCacheLoadMatchesLoad edits a document at random, over and over, and
// loads each version through one Cache and without: the State, or the
// errors, must be the same.
func TestCacheLoadMatchesLoad(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		c := newEditable(rng)
		cache := NewCache()
		valid, assembled := 0, 0
		for k := range 60 {
			c.edit(rng, k)
			doc := c.yaml()
			if rng.IntN(4) == 0 {
				doc = mangle(rng, doc)
			}
			srcs := []Source{{Name: "state.yaml", Data: []byte(doc), Mode: 0o600}}
			if rng.IntN(5) == 0 { // the domains in a file of their own
				head, rest, ok := strings.Cut(doc, "domains:\n")
				if ok {
					srcs = []Source{{Name: "a.yaml", Data: []byte(head), Mode: 0o600}, {Name: "b.yaml", Data: []byte("domains:\n" + rest), Mode: 0o600}}
				}
			}
			want, werr := Load(srcs)
			got, gerr := cache.Load(srcs)
			if msg := differ(want, werr, got, gerr); msg != "" {
				t.Fatalf("seed %d edit %d: %s\ndocument:\n%s", seed, k, msg, doc)
			}
			if werr == nil {
				valid++
			}
			if _, ok := splitSource(srcs[len(srcs)-1].Data); ok {
				assembled++
			}
			if werr != nil && rng.IntN(2) == 0 {
				c = newEditable(rng) // start again from a valid document
			}
		}
		// The test must exercise both outcomes and the split.
		if valid < 10 || valid > 55 || assembled < 10 {
			t.Errorf("seed %d: %d valid documents of 60, %d split into parts: the edits do not cover enough", seed, valid, assembled)
		}
	}
}

// TestCacheReusesDomains checks that the cache does what it is for: after
// an edit of one domain, only that domain is validated again.
func TestCacheReusesDomains(t *testing.T) {
	c := newEditable(rand.New(rand.NewPCG(1, 1)))
	cache := NewCache()
	load := func() *State {
		t.Helper()
		st, err := cache.Load([]Source{{Name: "state.yaml", Data: []byte(c.yaml()), Mode: 0o600}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	load()
	parsed, validated := len(cache.parts), len(cache.valid)
	c.domains[1].accounts[2].name = "Renamed"
	st := load()
	if st.Domains[1].Accounts[2].Name != "Renamed" {
		t.Fatalf("the edit is not in the state: %+v", st.Domains[1].Accounts[2])
	}
	// One new part and one new validated domain; the others reused.
	if len(cache.parts) != parsed+1 || len(cache.valid) != validated+1 {
		t.Errorf("after an edit of one domain: %d parts (was %d), %d validated (was %d); want one more of each", len(cache.parts), parsed, len(cache.valid), validated)
	}
	// A state from the cache shares nothing with it.
	st.Domains[0].Accounts[0].Aliases[0] = "changed"
	st.Domains[0].Accounts = append(st.Domains[0].Accounts[:1], Account{ID: "x"})
	if again := load(); again.Domains[0].Accounts[0].Aliases[0] != "a0" || again.Domains[0].Accounts[1].ID == "x" {
		t.Errorf("changing a loaded state changed the cache: %+v", again.Domains[0].Accounts[:2])
	}
	// What two loads in a row did not use is forgotten.
	c.domains = c.domains[:1]
	load()
	load()
	if len(cache.valid) != 1 {
		t.Errorf("%d validated domains kept for a document of 1", len(cache.valid))
	}
}

func TestSplitSource(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		items []string
		ok    bool
	}{
		{"block list", "a: 1\ndomains:\n  - x: 1\n    y: 2\n  - x: 3\nb: 2\n", []string{"  - x: 1\n    y: 2\n", "  - x: 3\n"}, true},
		{"items at the first column", "domains:\n- x: 1\n- x: 2\n", []string{"- x: 1\n", "- x: 2\n"}, true},
		{"comments and blank lines", "domains: # the domains\n\n  # first\n  - x: 1\n\n# between\n  - x: 2", []string{"  - x: 1\n\n# between\n", "  - x: 2"}, true},
		{"document start", "---\ndomains:\n  - x: 1\n", []string{"  - x: 1\n"}, true},
		{"flow list", "domains: [{x: 1}]\n", nil, false},
		{"flow list on the next line", "domains:\n  [{x: 1}]\n", nil, false},
		{"no domains", "a: 1\n", nil, false},
		{"empty list", "domains:\n", nil, false},
		{"two documents", "domains:\n  - x: 1\n---\na: 1\n", nil, false},
		{"directive", "%YAML 1.2\n---\ndomains:\n  - x: 1\n", nil, false},
		{"CRLF", "domains:\r\n  - x: 1\r\n", nil, false},
		{"tab", "domains:\n  - x: 1\n\t  y: 2\n", nil, false},
		{"less indented line", "domains:\n  - x: 1\n y: 2\n", nil, false},
		{"domains twice", "domains:\n  - x: 1\ndomains:\n  - x: 2\n", nil, false},
		{"domains with a space", "domains :\n  - x: 1\n", nil, false},
		{"comment without space", "domains:#x\n  - x: 1\n", nil, false},
		{"line separator", "domains:\n  - x: \"a\u2028b\"\n", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, ok := splitSource([]byte(tt.doc))
			if ok != tt.ok {
				t.Fatalf("split: %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			var items []string
			for _, it := range sp.items {
				items = append(items, string(it))
			}
			if !reflect.DeepEqual(items, tt.items) {
				t.Errorf("items %q, want %q", items, tt.items)
			}
			if got := string(sp.header) + strings.Join(items, "") + string(sp.trailer); got != tt.doc {
				t.Errorf("the parts do not make the document again: %q", got)
			}
		})
	}
}

// FuzzCacheLoad loads a first document through a cache, then a second: the
// second must give through the cache what it gives without. The splitting
// of a file into parts parses outside input: whatever it lets through must
// read as the whole file reads.
func FuzzCacheLoad(f *testing.F) {
	small := newEditable(rand.New(rand.NewPCG(1, 1)))
	small.domains = small.domains[:3]
	for i := range small.domains {
		small.domains[i].accounts = small.domains[i].accounts[:2]
	}
	big := small.yaml()
	f.Add([]byte(base), []byte(strings.Replace(base, "René RICARD", "René", 1)))
	f.Add([]byte(big), []byte(strings.Replace(big, "User 1", "User 11", 1)))
	f.Add([]byte(big), []byte(strings.Replace(big, "  - name: d2", "  - name: d1", 1)))
	f.Add([]byte(big), []byte(big+"managers: [{login: x, domains: [d9.example]}]\n"))
	f.Add([]byte(big), []byte(strings.Replace(big, "      - id: u1\n", "      - id: u1\n  foo: 1\n", 1)))
	f.Add([]byte(base), []byte("domains:\n- name: a.fr\n  accounts: [{id: x}]\n- name: b.fr\n  accounts: [{id: y}]\n"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		if len(first) > 4096 || len(second) > 4096 {
			return
		}
		timer := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("slow inputs %q, %q", first, second)) })
		defer timer.Stop()
		c := NewCache()
		c.Load([]Source{{Name: "f.yaml", Data: first, Mode: 0o600}})
		srcs := []Source{{Name: "f.yaml", Data: second, Mode: 0o600}}
		want, werr := Load(srcs)
		got, gerr := c.Load(srcs)
		if msg := differ(want, werr, got, gerr); msg != "" {
			t.Fatalf("%s\nfirst:\n%s\nsecond:\n%s", msg, first, second)
		}
	})
}
