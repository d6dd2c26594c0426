package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"gopkg.in/yaml.v3"
)

// Cache makes loading an edited document cost about what its edit costs:
// it keeps, from earlier loads, the parsed YAML of each domain's part of a
// state file and each validated domain, keyed by hashes of their content,
// so that a load parses and validates again only the domains whose content
// changed. The rules that span domains (a domain defined twice, managers'
// domains, the models' single domain) run on the whole document every
// time.
//
// A Cache is owned by whoever loads documents again and again (the applier
// keeps one); it is safe for concurrent use, and keeps what the last two
// loads used.
//
// Load with a cache gives the same State, or the same errors, as Load
// without: a document is split into parts only when its layout makes each
// part parse alone as it does within the whole, and a document with an
// error is loaded again from scratch, so that every error is positioned
// exactly as Load positions it.
type Cache struct {
	mu    sync.Mutex
	loads uint64 // loads begun, to stamp what each used
	parts map[[32]byte]*part
	valid map[[32]byte]*validated
}

// part is a piece of a state file parsed alone: a domain of the domains
// list, or the rest of the file.
type part struct {
	node  *yaml.Node // the domain's node; the document node of the rest
	json  []byte     // a domain's value as the converter encodes it for CUE
	nodes int        // YAML nodes under node
	stamp
}

// validated is a domain that passed the schema.
type validated struct {
	domain  *Domain // as decoded, before the required accounts are added
	rulesOK bool    // the domain's own rules (names, references, hashes) passed
	stamp
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{parts: map[[32]byte]*part{}, valid: map[[32]byte]*validated{}}
}

// Load is Load, reusing what earlier loads through c learnt. A nil c is
// plain Load.
func (c *Cache) Load(srcs []Source) (*State, error) {
	if c == nil {
		return Load(srcs)
	}
	c.mu.Lock()
	c.loads++
	lc := &loadCache{c: c, load: c.loads, pre: map[*yaml.Node]*part{}}
	c.mu.Unlock()
	defer c.sweep()
	st, errs := loadDocument(srcs, lc)
	if len(errs) > 0 && lc.assembled {
		// Positions come from the whole file's parse only.
		st, errs = loadDocument(srcs, nil)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return st, nil
}

// sweep forgets what neither this load nor the one before used.
func (c *Cache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	forgetStale(c.parts, c.loads)
	forgetStale(c.valid, c.loads)
}

// stamp is the last load that used an entry of the cache.
type stamp struct{ used uint64 }

func (s *stamp) mark(load uint64) { s.used = load }

// stale reports whether neither load nor the one before used the entry.
func (s *stamp) stale(load uint64) bool { return s.used+1 < load }

// entry is what a Cache keeps: a *part or a *validated.
type entry interface {
	mark(load uint64)
	stale(load uint64) bool
}

func forgetStale[E entry](m map[[32]byte]E, load uint64) {
	for k, e := range m {
		if e.stale(load) {
			delete(m, k)
		}
	}
}

// loadCache is one load's use of a Cache.
type loadCache struct {
	c    *Cache
	load uint64
	// assembled: a source was put together from parts parsed alone.
	assembled bool
	// pre holds the domains of assembled sources, whose converted value
	// is known and which give no key twice.
	pre map[*yaml.Node]*part
	// keys are, per domain of the document, the key of its validated
	// entry.
	keys [][32]byte
}

// get returns m's entry of key, or nil, and marks it used by this load.
func get[E entry](lc *loadCache, m map[[32]byte]E, key [32]byte) E {
	lc.c.mu.Lock()
	defer lc.c.mu.Unlock()
	e, ok := m[key]
	if ok {
		e.mark(lc.load)
	}
	return e
}

// put keeps e as m's entry of key, used by this load.
func put[E entry](lc *loadCache, m map[[32]byte]E, key [32]byte, e E) {
	lc.c.mu.Lock()
	defer lc.c.mu.Unlock()
	e.mark(lc.load)
	m[key] = e
}

// rulesOK reports whether domain i's own rules are known to pass.
func (lc *loadCache) rulesOK(i int) bool {
	if lc == nil || i >= len(lc.keys) {
		return false
	}
	lc.c.mu.Lock()
	defer lc.c.mu.Unlock()
	v := lc.c.valid[lc.keys[i]]
	return v != nil && v.rulesOK
}

// passed records that every domain's own rules passed.
func (lc *loadCache) passed() {
	lc.c.mu.Lock()
	defer lc.c.mu.Unlock()
	for _, k := range lc.keys {
		if v := lc.c.valid[k]; v != nil {
			v.rulesOK = true
		}
	}
}

// validationKey identifies what validating a domain's data gives: the
// language it defaults to, and the JSON given to CUE.
func validationKey(language string, data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(language))
	h.Write([]byte{0})
	h.Write(data)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// unmarshal parses one source into n: from cached parts when the source
// splits into them, else whole.
func (lc *loadCache) unmarshal(data []byte, n *yaml.Node) error {
	if lc != nil {
		if doc := lc.assemble(data); doc != nil {
			*n = *doc
			lc.assembled = true
			return nil
		}
	}
	return yaml.Unmarshal(data, n)
}

// assemble returns the document of data put together from its parts, or
// nil when data does not split into parts that parse alone as they do in
// the whole file.
func (lc *loadCache) assemble(data []byte) *yaml.Node {
	sp, ok := splitSource(data)
	if !ok {
		return nil
	}
	rest := make([]byte, 0, len(sp.header)+len(sp.trailer)+1)
	rest = append(append(append(rest, 'R'), sp.header...), sp.trailer...)
	rp := get(lc, lc.c.parts, sha256.Sum256(rest))
	if rp == nil {
		rp = parseRest(rest[1:], sp.domainsLine)
		if rp == nil {
			return nil
		}
		put(lc, lc.c.parts, sha256.Sum256(rest), rp)
	}
	items := make([]*yaml.Node, len(sp.items))
	total := rp.nodes
	for i, text := range sp.items {
		key := sha256.Sum256(text)
		p := get(lc, lc.c.parts, key)
		if p == nil {
			if p = parseDomainPart(text); p == nil {
				return nil
			}
			put(lc, lc.c.parts, key, p)
		}
		items[i] = p.node
		lc.pre[p.node] = p
		total += p.nodes
	}
	if total > maxNodes/2 {
		return nil // near the limit: let the whole parse count
	}
	// New nodes around the cached ones: those are shared with other loads
	// and never changed.
	root := *rp.node.Content[0]
	root.Content = append([]*yaml.Node(nil), root.Content...)
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "domains" {
			k, v := root.Content[i], root.Content[i+1]
			root.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: k.Column, Content: items}
		}
	}
	doc := *rp.node
	doc.Content = []*yaml.Node{&root}
	return &doc
}

// parseRest parses the file without its domains: a mapping at the top
// whose "domains" key, at domainsLine, has no value yet.
func parseRest(text []byte, domainsLine int) *part {
	n, ok := parseAlone(text)
	if !ok || n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
		return nil
	}
	root := n.Content[0]
	if root.Kind != yaml.MappingNode || root.Column != 1 {
		return nil
	}
	found := 0
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "domains" {
			found++
			if k.Line != domainsLine || k.Column != 1 || k.Tag != "!!str" || k.Style != 0 ||
				v.Kind != yaml.ScalarNode || v.Tag != "!!null" || v.Value != "" {
				return nil
			}
		}
	}
	if found != 1 {
		return nil
	}
	nodes, plain := countNodes(n)
	if !plain {
		return nil
	}
	return &part{node: n, nodes: nodes}
}

// parseDomainPart parses the text of one item of the domains list alone,
// checks that it gives no key twice, and converts it as validate does.
func parseDomainPart(text []byte) *part {
	n, ok := parseAlone(text)
	if !ok || n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
		return nil
	}
	seq := n.Content[0]
	if seq.Kind != yaml.SequenceNode || len(seq.Content) != 1 || seq.Style != 0 {
		return nil
	}
	item := seq.Content[0]
	nodes, plain := countNodes(item)
	if !plain {
		return nil
	}
	// Checked once here, so that duplicateFields skips the part's nodes:
	// a part with a key given twice is not kept, and its file is parsed
	// whole.
	dup := false
	duplicateKeys(item, nil, nil, func([]string, *yaml.Node, *yaml.Node) { dup = true })
	if dup {
		return nil
	}
	conv := &converter{d: &document{root: &yaml.Node{Kind: yaml.MappingNode}}}
	v := conv.value(item, []string{"domains", "0"}, "domains.*")
	if len(conv.errs) > 0 {
		return nil
	}
	return &part{node: item, json: jsonBytes(v), nodes: nodes}
}

// parseAlone parses text as one YAML document and nothing after it (a
// decoder stops after the first document; trailing text must not be
// ignored here when the whole file would read it).
func parseAlone(text []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(text))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		return nil, false
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return &n, true
}

// countNodes counts the nodes under n, and reports whether none is an
// anchor, an alias or a merge key: parts are parsed alone, and an alias
// may refer to another part.
func countNodes(n *yaml.Node) (int, bool) {
	count, plain := 0, true
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		count++
		if n.Kind == yaml.AliasNode || n.Anchor != "" || n.Tag == "!!merge" {
			plain = false
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return count, plain
}

// split is a state file cut into the items of its block list of domains
// and the rest.
type split struct {
	header, trailer []byte   // before the first domain; after the last
	items           [][]byte // each domain's lines
	domainsLine     int      // the line of "domains:", from 1
}

// splitSource cuts data at the lines where its top-level "domains:" block
// list starts, each of its items starts, and the list ends. It refuses
// (false) whatever could make a part read differently alone than within
// the file: other line breaks than \n, tabs before a line's text, several
// YAML documents or directives, a "domains" key that is not alone on its
// line at the first column, a line less indented than the items inside
// the list. Anything it lets through that still reads differently shows
// as an error or as a different structure when the parts are parsed, and
// the file is then parsed whole.
func splitSource(data []byte) (split, bool) {
	var sp split
	if bytes.IndexByte(data, '\r') >= 0 || bytes.Contains(data, []byte("\u0085")) ||
		bytes.Contains(data, []byte("\u2028")) || bytes.Contains(data, []byte("\u2029")) {
		return sp, false
	}
	const (
		beforeDomains = iota
		beforeFirstItem
		inList
		after
	)
	state, indent := beforeDomains, 0
	itemStart, trailerStart := -1, len(data)
	var starts []int
	for pos, line := 0, 1; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			end += pos
			next = end + 1
		} else {
			end = len(data)
		}
		text := data[pos:end]
		body := bytes.TrimLeft(text, " ")
		ind := len(text) - len(body)
		blank := len(body) == 0 || body[0] == '#'
		if len(body) > 0 && body[0] == '\t' {
			return sp, false
		}
		if ind == 0 && len(body) > 0 && (docMarker(body) || body[0] == '%') && !(line == 1 && bytes.Equal(bytes.TrimRight(body, " "), []byte("---"))) {
			return sp, false
		}
		if ind == 0 && bytes.HasPrefix(body, []byte("domains")) && !bytes.HasPrefix(body, []byte("domains:")) {
			return sp, false // "domains :" or a longer key: do not guess
		}
		isDomainsKey := ind == 0 && bytes.HasPrefix(body, []byte("domains:"))
		if isDomainsKey && state != beforeDomains {
			return sp, false
		}
		switch state {
		case beforeDomains:
			if isDomainsKey {
				rest := bytes.TrimLeft(body[len("domains:"):], " ")
				if len(rest) > 0 && (rest[0] != '#' || len(body)-len("domains:")-len(rest) == 0) {
					return sp, false // a value on the line itself
				}
				state, sp.domainsLine = beforeFirstItem, line
			}
		case beforeFirstItem:
			if blank {
				break
			}
			if !itemLine(body) {
				return sp, false
			}
			state, indent, itemStart = inList, ind, pos
			starts = append(starts, pos)
		case inList:
			switch {
			case blank:
			case ind == indent && itemLine(body):
				starts = append(starts, pos)
			case ind > indent:
			case ind == 0:
				state, trailerStart = after, pos
			default:
				return sp, false
			}
		}
		pos = next
	}
	if state != inList && state != after {
		return sp, false
	}
	sp.header = data[:itemStart]
	sp.trailer = data[trailerStart:]
	sp.items = make([][]byte, len(starts))
	for i, s := range starts {
		e := trailerStart
		if i+1 < len(starts) {
			e = starts[i+1]
		}
		sp.items[i] = data[s:e]
	}
	return sp, true
}

// itemLine reports whether a line's text (after its indentation) starts an
// item of a block list.
func itemLine(body []byte) bool {
	return len(body) > 0 && body[0] == '-' && (len(body) == 1 || body[1] == ' ')
}

// docMarker reports whether a line at the first column starts or ends a
// YAML document.
func docMarker(body []byte) bool {
	for _, m := range []string{"---", "..."} {
		if bytes.HasPrefix(body, []byte(m)) && (len(body) == 3 || body[3] == ' ' || body[3] == '\t') {
			return true
		}
	}
	return false
}

// rawDomain returns the JSON of a domain's converted value when the
// converter took it from a cached part.
func rawDomain(v any) ([]byte, bool) {
	rm, ok := v.(json.RawMessage)
	return rm, ok
}

// clone returns a copy of d that shares nothing with it.
func (d *Domain) clone() Domain {
	c := *d
	if d.DNS.Hosts != nil {
		c.DNS.Hosts = make(map[string]string, len(d.DNS.Hosts))
		for k, v := range d.DNS.Hosts {
			c.DNS.Hosts[k] = v
		}
	}
	if d.Accounts != nil {
		c.Accounts = make([]Account, len(d.Accounts), len(d.Accounts)+2) // room for the required accounts
		for i, a := range d.Accounts {
			a.Aliases = cloneStrings(a.Aliases)
			c.Accounts[i] = a
		}
	}
	if d.Redirections != nil {
		c.Redirections = make([]Redirection, len(d.Redirections))
		for i, r := range d.Redirections {
			r.To = cloneStrings(r.To)
			c.Redirections[i] = r
		}
	}
	if d.Mailings != nil {
		c.Mailings = make([]Mailing, len(d.Mailings))
		for i, m := range d.Mailings {
			m.Editors, m.Senders = cloneStrings(m.Editors), cloneStrings(m.Senders)
			c.Mailings[i] = m
		}
	}
	return c
}

func cloneStrings(l []string) []string {
	if l == nil {
		return nil
	}
	return append(make([]string, 0, len(l)), l...)
}
