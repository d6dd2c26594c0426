package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Source is one state file: its name (as given to errors), content and
// permission bits (inline secrets are refused in files others can read).
type Source struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// maxStateFile bounds what the loader reads of one file.
const maxStateFile = 64 << 20

// ReadSources reads a state file, or every *.yaml and *.yml file of a
// directory in name order.
func ReadSources(path string) ([]Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	names := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("read state directory: %w", err)
		}
		names = names[:0]
		for _, e := range entries {
			n := e.Name()
			if e.Type().IsRegular() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				names = append(names, filepath.Join(path, n))
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("read state directory %s: no *.yaml file", path)
		}
		sort.Strings(names)
	}
	srcs := make([]Source, 0, len(names))
	for _, n := range names {
		src, err := readSource(n)
		if err != nil {
			return nil, fmt.Errorf("read state %s: %w", n, err)
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

func readSource(name string) (Source, error) {
	f, err := os.Open(name)
	if err != nil {
		return Source{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Source{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return Source{}, err
	}
	if len(data) > maxStateFile {
		return Source{}, fmt.Errorf("larger than %d MiB", maxStateFile>>20)
	}
	return Source{Name: name, Data: data, Mode: fi.Mode().Perm()}, nil
}

// Load validates sources and returns the desired state with defaults
// applied. A document that is not valid gives Errors, every one of them.
//
// Several files merge into one document: their domains and managers lists
// are joined; any other top-level section may appear in one file only.
func Load(srcs []Source) (*State, error) {
	st, errs := loadDocument(srcs, nil)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return st, nil
}

// loadDocument is Load, with what lc (if not nil) knows of earlier loads.
func loadDocument(srcs []Source, lc *loadCache) (*State, Errors) {
	doc, errs := parseWith(srcs, lc)
	if len(errs) > 0 {
		return nil, errs
	}
	st, errs := doc.validate()
	if len(errs) > 0 {
		return nil, errs
	}
	errs = doc.checkRules(st)
	if len(errs) > 0 {
		return nil, errs
	}
	if lc != nil {
		lc.passed()
	}
	return st, nil
}

// document is the merged YAML of every source, with enough to point an
// error at the file, line and column it comes from.
type document struct {
	root   *yaml.Node            // merged top-level mapping
	fileOf map[*yaml.Node]string // file of top-level values and list items
	modeOf map[string]fs.FileMode
	first  string // file named when an error has no better place
	cache  *loadCache
}

func parse(srcs []Source) (*document, Errors) { return parseWith(srcs, nil) }

func parseWith(srcs []Source, lc *loadCache) (*document, Errors) {
	d := &document{
		root:   &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1},
		fileOf: map[*yaml.Node]string{},
		modeOf: map[string]fs.FileMode{},
		cache:  lc,
	}
	if len(srcs) == 0 {
		return d, Errors{{Message: "no state file given"}}
	}
	d.first = srcs[0].Name
	var errs Errors
	lists := map[string]*yaml.Node{} // domains, managers: joined across files
	seen := map[string]*Error{}      // other sections: where they were first defined
	for _, src := range srcs {
		d.modeOf[src.Name] = src.Mode
		var n yaml.Node
		if err := lc.unmarshal(src.Data, &n); err != nil {
			errs = append(errs, yamlSyntaxError(src.Name, src.Data, err))
			continue
		}
		if n.Kind == 0 || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) {
			continue // an empty file adds nothing
		}
		top := n.Content[0]
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			continue
		}
		if top.Kind != yaml.MappingNode {
			errs = append(errs, &Error{File: src.Name, Line: top.Line, Column: top.Column, Message: "expected a mapping of sections (system, network, smtp, managers, domains)"})
			continue
		}
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			key := k.Value
			if key == "domains" || key == "managers" {
				if v.Kind == yaml.SequenceNode {
					if lists[key] == nil {
						lists[key] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: v.Column}
						d.fileOf[lists[key]] = src.Name
						d.root.Content = append(d.root.Content, k, lists[key])
					}
					for _, item := range v.Content {
						d.fileOf[item] = src.Name
					}
					lists[key].Content = append(lists[key].Content, v.Content...)
					continue
				}
				if v.Tag == "!!null" {
					continue
				}
			}
			if prev, ok := seen[key]; ok {
				errs = append(errs, &Error{File: src.Name, Line: k.Line, Column: k.Column, Path: key,
					Message: fmt.Sprintf("section %q is already defined in %s:%d; a section other than domains and managers belongs to one file", key, prev.File, prev.Line)})
				continue
			}
			seen[key] = &Error{File: src.Name, Line: k.Line}
			d.fileOf[v] = src.Name
			d.root.Content = append(d.root.Content, k, v)
		}
	}
	errs = append(errs, d.duplicateFields()...)
	return d, errs
}

// at returns an error positioned at path, or at the deepest part of path
// that the document has (a missing field is reported on its parent).
func (d *document) at(path []string, msg string) *Error {
	n, file := d.root, d.first
	found := 0
	for _, elem := range path {
		next := child(n, elem)
		if next == nil {
			break
		}
		n = next
		if f, ok := d.fileOf[n]; ok {
			file = f
		}
		found++
	}
	e := &Error{File: file, Path: formatPath(path), Message: msg}
	if n != d.root {
		e.Line, e.Column = n.Line, n.Column
	}
	if found < len(path) && msg == "" {
		e.Message = "missing"
	}
	return e
}

// keyAt is like at but points at the key of a mapping entry (for fields
// that should not be there).
func (d *document) keyAt(path []string, msg string) *Error {
	e := d.at(path, msg)
	if len(path) == 0 {
		return e
	}
	n := d.node(path[:len(path)-1])
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == path[len(path)-1] {
				e.Line, e.Column = n.Content[i].Line, n.Content[i].Column
			}
		}
	}
	return e
}

// node returns the YAML node at path, or nil.
func (d *document) node(path []string) *yaml.Node {
	n := d.root
	for _, elem := range path {
		if n = child(n, elem); n == nil {
			return nil
		}
	}
	return n
}

func child(n *yaml.Node, elem string) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == elem {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		i, err := strconv.Atoi(elem)
		if err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

// formatPath writes a field path the way people read it: domains[0].accounts[2].id.
func formatPath(path []string) string {
	var b strings.Builder
	for _, elem := range path {
		if _, err := strconv.Atoi(elem); err == nil {
			b.WriteString("[" + elem + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(elem)
	}
	return b.String()
}

// Fields whose values are identifiers or names: input is case-insensitive
// (manual 5.6), so they are lowercased before validation.
var lowercased = map[string]bool{
	"system.hostname":                  true,
	"managers.*.login":                 true,
	"managers.*.domains.*":             true,
	"domains.*.name":                   true,
	"domains.*.dns.hosts.{}":           true,
	"domains.*.accounts.*.id":          true,
	"domains.*.accounts.*.aliases.*":   true,
	"domains.*.redirections.*.address": true,
	"domains.*.redirections.*.to.*":    true,
	"domains.*.mailings.*.name":        true,
	"domains.*.mailings.*.replies_to":  true,
	"domains.*.mailings.*.editors.*":   true,
	"domains.*.mailings.*.senders.*":   true,
}

// maxNodes bounds the values a document may expand to, so YAML aliases
// cannot blow a small file up into an enormous one.
const maxNodes = 2_000_000

type converter struct {
	expanding map[*yaml.Node]bool // anchors being expanded: an alias inside its own anchor is a cycle
	nodes     int
	errs      Errors
	d         *document
	pre       map[*yaml.Node]*part // nodes already converted (Cache)
}

// value turns a YAML node into plain Go values (map[string]any, []any,
// string, int64, float64, bool, nil) for CUE.
func (c *converter) value(n *yaml.Node, path []string, pattern string) any {
	if p, ok := c.pre[n]; ok {
		c.nodes += p.nodes
		return json.RawMessage(p.json)
	}
	c.nodes++
	if c.nodes > maxNodes {
		if c.nodes == maxNodes+1 {
			c.errs = append(c.errs, c.d.at(path, "document too large (YAML aliases expand beyond limits)"))
		}
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil
		}
		if c.expanding[n.Alias] {
			c.errs = append(c.errs, &Error{File: c.d.fileFor(path), Line: n.Line, Column: n.Column, Path: formatPath(path), Message: "YAML alias *" + n.Value + " refers to itself"})
			return nil
		}
		if c.expanding == nil {
			c.expanding = map[*yaml.Node]bool{}
		}
		c.expanding[n.Alias] = true
		defer delete(c.expanding, n.Alias)
		return c.value(n.Alias, path, pattern)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return c.value(n.Content[0], path, pattern)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		given := map[string]string{} // lowercased key → as given, for keys lowercased
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				c.errs = append(c.errs, &Error{File: c.d.fileFor(path), Line: k.Line, Column: k.Column, Path: formatPath(path), Message: "mapping keys must be plain names"})
				continue
			}
			key := k.Value
			sub := pattern + "." + key
			if pattern == "" {
				sub = key
			}
			if lowercased[pattern+".{}"] {
				key = strings.ToLower(key)
				sub = pattern + ".{}"
				if first, dup := given[key]; dup && first != k.Value {
					// "WWW" and "www" are one name: the second would
					// silently replace the first.
					c.errs = append(c.errs, &Error{File: c.d.fileFor(path), Line: k.Line, Column: k.Column, Path: formatPath(append(path, k.Value)),
						Message: fmt.Sprintf("%q is the same name as %q given above (names do not depend on case): keep one", k.Value, first)})
					continue
				}
				given[key] = k.Value
			}
			m[key] = c.value(n.Content[i+1], append(path, k.Value), sub)
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, item := range n.Content {
			l[i] = c.value(item, append(path, strconv.Itoa(i)), pattern+".*")
		}
		return l
	case yaml.ScalarNode:
		return c.scalar(n, path, pattern)
	}
	return nil
}

func (c *converter) scalar(n *yaml.Node, path []string, pattern string) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err == nil {
			return b
		}
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i
		}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err == nil {
			return f
		}
	}
	if lowercased[pattern] {
		return strings.ToLower(n.Value)
	}
	return n.Value
}

func (d *document) fileFor(path []string) string {
	return d.at(path, "").File
}

// jsonBytes encodes v for CUE without HTML escaping (CUE reads JSON as CUE).
func jsonBytes(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Values come from YAML scalars: only NaN/Inf floats fail, which the
		// schema has no place for; encode them as strings to get a clear error.
		return []byte("null")
	}
	return b.Bytes()
}

// workers is how many domains are validated at once.
func workers(n int) int {
	w := runtime.GOMAXPROCS(0)
	if w > n {
		w = n
	}
	if w < 1 {
		w = 1
	}
	return w
}

// forEach runs f(i) for i in [0,n) on a few goroutines and waits for them.
func forEach(n int, f func(worker, i int)) {
	w := workers(n)
	var wg sync.WaitGroup
	next := make(chan int)
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for i := range next {
				f(worker, i)
			}
		}(k)
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return es
}
