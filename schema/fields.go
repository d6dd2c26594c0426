package schema

import (
	"reflect"
	"strconv"
	"strings"
)

// Field paths name the document's fields as its YAML keys do, with "[]"
// for the elements of a list: "network.dhcp.start",
// "domains[].accounts[].name". A leaf is a field that holds a value: a
// scalar, a list of scalars ("network.wan.dns") or a map
// ("domains[].dns.hosts"); a section is a field that holds leaves.
//
// A changed path names one field of one document, with each list element
// named by its identity where it has one: "domains[ma-societe.fr].dns.hosts",
// "network.forwards[tcp/8080].to_port"; by its index otherwise.

// Fields lists the path of every leaf of the document, in the order of
// the Go types (which is the schema's). It is derived from State's JSON
// field tree, so a field added to State is in it.
func Fields() []string {
	return fieldsOf(reflect.TypeFor[State]())
}

// fieldsOf lists the leaves of a struct type, as Fields does.
func fieldsOf(t reflect.Type) []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for _, f := range jsonFields(t) {
			path := join(prefix, f.name)
			ft := f.typ
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct:
				walk(path, ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(path+"[]", ft.Elem())
			default:
				out = append(out, path)
			}
		}
	}
	walk("", t)
	return out
}

// FieldChange is a leaf whose value differs between two documents.
type FieldChange struct {
	// Path is the changed path: "network.forwards[tcp/8080].to_port".
	Path string `json:"path"`
	// Field is its path in Fields(): "network.forwards[].to_port".
	Field string `json:"field"`
}

// ChangedPaths lists the leaves whose values differ from old to new, in
// the order of the types (within a list: old's elements, then those new
// adds). A nil State is the empty document. List elements are matched by
// their identity (a domain's name, an account's id…), so that an
// element added, removed or moved changes only its own leaves; an element
// added or removed counts as the change of each of its non-empty leaves.
// The order of a list of elements with an identity is not compared; the
// order of a list of scalars is. A nil and an empty list or map are the
// same.
//
// With within, only the fields that those paths cover are compared, and
// the rest of the documents is not walked: on a document of ten thousand
// accounts, comparing the network's fields takes no time.
func ChangedPaths(old, new *State, within ...string) []FieldChange {
	if old == nil {
		old = &State{}
	}
	if new == nil {
		new = &State{}
	}
	c := &comparison{within: within}
	c.compare("", "", reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem())
	return c.out
}

// Covers reports whether path is field or a section that holds it:
// "network.dhcp" covers "network.dhcp.start", "domains[]" covers
// "domains[].name".
func Covers(path, field string) bool {
	if !strings.HasPrefix(field, path) {
		return false
	}
	return len(field) == len(path) || field[len(path)] == '.' || field[len(path)] == '['
}

type comparison struct {
	within []string
	out    []FieldChange
}

// wanted reports whether field holds, or is held by, a path of within.
func (c *comparison) wanted(field string) bool {
	if len(c.within) == 0 {
		return true
	}
	for _, w := range c.within {
		if Covers(w, field) || Covers(field, w) {
			return true
		}
	}
	return false
}

// compare compares two values of one type at path (field: its path in
// Fields()).
func (c *comparison) compare(path, field string, a, b reflect.Value) {
	if field != "" && !c.wanted(field) {
		return
	}
	t := a.Type()
	switch {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		if a.IsNil() && b.IsNil() {
			return
		}
		c.compare(path, field, deref(a), deref(b))
	case t.Kind() == reflect.Struct:
		for _, f := range jsonFields(t) {
			c.compare(join(path, f.name), join(field, f.name), a.FieldByIndex(f.index), b.FieldByIndex(f.index))
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		c.elements(path, field+"[]", a, b)
	default:
		if !sameLeaf(a, b) {
			c.out = append(c.out, FieldChange{Path: path, Field: field})
		}
	}
}

// elements compares two lists of structs element by element, matched by
// identity.
func (c *comparison) elements(path, field string, a, b reflect.Value) {
	ka, okA := elementKeys(a)
	kb, okB := elementKeys(b)
	if !okA || !okB {
		// Without an identity for every element, elements are matched by
		// their place in the list.
		zero := reflect.Zero(a.Type().Elem())
		for i := range max(a.Len(), b.Len()) {
			x, y := zero, zero
			if i < a.Len() {
				x = a.Index(i)
			}
			if i < b.Len() {
				y = b.Index(i)
			}
			c.compare(path+"["+strconv.Itoa(i)+"]", field, x, y)
		}
		return
	}
	inB := make(map[string]int, len(kb))
	for j, k := range kb {
		inB[k] = j
	}
	zero := reflect.Zero(a.Type().Elem())
	matched := make(map[string]bool, len(ka))
	for i, k := range ka {
		y := zero
		if j, ok := inB[k]; ok {
			y = b.Index(j)
			matched[k] = true
		}
		c.compare(path+"["+k+"]", field, a.Index(i), y)
	}
	for j, k := range kb {
		if !matched[k] {
			c.compare(path+"["+k+"]", field, zero, b.Index(j))
		}
	}
}

// elementKeys returns the identity of each element of a list, or false
// when an element has none or two elements share one.
func elementKeys(l reflect.Value) ([]string, bool) {
	keys := make([]string, l.Len())
	seen := make(map[string]bool, l.Len())
	for i := range keys {
		k, ok := identity(l.Index(i).Interface())
		if !ok || k == "" || seen[k] {
			return nil, false
		}
		seen[k] = true
		keys[i] = k
	}
	return keys, true
}

// identity is what names an element of a list of the document: what the
// rules require to be unique, and what plans and diffs name it by.
func identity(v any) (string, bool) {
	switch e := v.(type) {
	case Manager:
		return e.Login, true
	case Domain:
		return e.Name, true
	case Account:
		return e.ID, true
	case Redirection:
		return e.Address, true
	case Mailing:
		return e.Name, true
	case Forward:
		return e.Protocol + "/" + strconv.Itoa(e.Port), true
	case Reservation:
		return strings.ToLower(e.MAC), true
	}
	return "", false
}

func deref(v reflect.Value) reflect.Value {
	if v.IsNil() {
		return reflect.Zero(v.Type().Elem())
	}
	return v.Elem()
}

// sameLeaf compares two leaves; a nil and an empty list or map are the
// same.
func sameLeaf(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

type jsonField struct {
	name  string
	index []int
	typ   reflect.Type
}

// jsonFields lists the fields of a struct type as encoding/json names
// them, embedded structs without a name flattened into their parent.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for _, g := range jsonFields(f.Type) {
				g.index = append([]int{i}, g.index...)
				out = append(out, g)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, index: []int{i}, typ: f.Type})
	}
	return out
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
