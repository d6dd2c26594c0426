package schema

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
)

//go:embed mailfountain.cue
var schemaSource []byte

// Schema returns the embedded CUE schema (for `cue vet` and the docs).
func Schema() []byte { return append([]byte(nil), schemaSource...) }

// compiled is the schema in one CUE context. CUE contexts are not safe for
// concurrent use, so each validating goroutine compiles its own (about a
// millisecond).
type compiled struct {
	ctx    *cue.Context
	file   cue.Value
	state  cue.Value
	domain cue.Value
	bounds map[string]string // a format's CUE text -> what it means to a person
}

// Formats and what they mean to the person reading an error.
var formatNames = map[string]string{
	"#Identifier":   "a lowercase identifier: letters a-z, digits, '.', '_' or '-', no spaces or accents, at most 64 characters",
	"#DomainName":   "a domain name such as ma-societe.fr",
	"#Label":        "a host name such as www",
	"#IPv4":         "an IPv4 address such as 192.168.1.1",
	"#IPv4CIDR":     "an IPv4 address with its prefix length, such as 203.0.113.10/24",
	"#IP":           "an IP address",
	"#HostName":     "a device's name: letters a-z, digits or '-', no dots, spaces or accents",
	"#MAC":          "a MAC address such as 02:00:5e:10:00:01",
	"#Port":         "a port number from 1 to 65535",
	"#Path":         "an absolute file path",
	"#Duration":     `a duration such as 5m, 1h30m or 5d (units s, m, h, d; "0" for none)`,
	"#PasswordHash": "an argon2id or bcrypt password hash (make one with `mfapply passwd`)",
}

func compile() (*compiled, error) {
	ctx := cuecontext.New()
	f := ctx.CompileBytes(schemaSource, cue.Filename("mailfountain.cue"))
	if err := f.Err(); err != nil {
		return nil, fmt.Errorf("compile schema: %w", err)
	}
	c := &compiled{ctx: ctx, file: f, state: f.LookupPath(cue.ParsePath("#State")), domain: f.LookupPath(cue.ParsePath("#Domain")), bounds: map[string]string{}}
	// CUE names one conjunct or disjunct of a format in its errors: map
	// each of them to the format's meaning.
	for def, text := range formatNames {
		for _, conj := range strings.Split(fmt.Sprint(f.LookupPath(cue.ParsePath(def))), " & ") {
			for _, part := range strings.Split(conj, " | ") {
				c.bounds[part] = text
			}
		}
	}
	return c, nil
}

// validate checks the document against the CUE schema and decodes it. The
// domains, which make up nearly all of a large document, are validated
// in parallel, each worker with its own CUE context.
func (d *document) validate() (*State, Errors) {
	conv := &converter{d: d}
	if d.cache != nil {
		conv.pre = d.cache.pre
	}
	raw := conv.value(d.root, nil, "")
	if len(conv.errs) > 0 {
		return nil, conv.errs
	}
	top, _ := raw.(map[string]any)
	var domains []any
	if l, ok := top["domains"].([]any); ok {
		domains = l
		delete(top, "domains")
	}

	c, err := compile()
	if err != nil {
		return nil, Errors{{Message: err.Error()}}
	}
	var st State
	errs := d.unify(c, c.state, top, nil, &st)
	if len(errs) > 0 {
		st.System.Language = "fr" // lets the domains be checked too
	}

	st.Domains = make([]Domain, len(domains))
	perDomain := make([]Errors, len(domains))
	ctxs := make([]*compiled, workers(len(domains)))
	ctxs[0] = c
	var compileErr error
	lc := d.cache
	if lc != nil {
		lc.keys = make([][32]byte, len(domains))
	}
	forEach(len(domains), func(w, i int) {
		data, ok := rawDomain(domains[i])
		if !ok {
			data = jsonBytes(domains[i])
		}
		if lc != nil {
			lc.keys[i] = validationKey(st.System.Language, data)
			if v := get(lc, lc.c.valid, lc.keys[i]); v != nil {
				st.Domains[i] = v.domain.clone()
				return
			}
		}
		if ctxs[w] == nil {
			cw, err := compile()
			if err != nil {
				compileErr = err
				return
			}
			ctxs[w] = cw
		}
		cw := ctxs[w]
		lang := cw.ctx.CompileString(fmt.Sprintf("{language: *%q | _}", st.System.Language))
		perDomain[i] = d.unifyJSON(cw, cw.domain.Unify(lang), data, []string{"domains", fmt.Sprint(i)}, &st.Domains[i])
		if lc != nil && len(perDomain[i]) == 0 {
			dom := st.Domains[i].clone()
			put(lc, lc.c.valid, lc.keys[i], &validated{domain: &dom})
		}
	})
	if compileErr != nil {
		return nil, Errors{{Message: compileErr.Error()}}
	}
	for _, e := range perDomain {
		errs = append(errs, e...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for i := range st.Domains {
		addRequiredAccounts(&st.Domains[i])
	}
	return &st, nil
}

// unify validates data against schema and decodes it into out.
func (d *document) unify(c *compiled, schema cue.Value, data any, prefix []string, out any) Errors {
	return d.unifyJSON(c, schema, jsonBytes(data), prefix, out)
}

// unifyJSON is unify of data already encoded.
func (d *document) unifyJSON(c *compiled, schema cue.Value, data []byte, prefix []string, out any) Errors {
	v := schema.Unify(c.ctx.CompileBytes(data))
	if err := v.Validate(cue.Concrete(true)); err != nil {
		errs := d.explain(c, err, prefix)
		// CUE leaves out missing fields when it found other errors; look
		// for them so that every problem is reported at once.
		errs = append(errs, d.missing(v, schema, prefix, errs)...)
		return errs
	}
	// Through JSON: faster than cue.Value.Decode for large documents.
	b, err := v.MarshalJSON()
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		return Errors{d.at(prefix, "decode: "+err.Error())}
	}
	return nil
}

// missing reports the required fields that v lacks and that errs does not
// already mention. CUE leaves them out when it found other errors, and an
// error makes the enclosing structs bottom, so the walk lists a struct's
// fields from the value when it can and from the schema when it cannot.
func (d *document) missing(v, schema cue.Value, prefix []string, errs Errors) Errors {
	reported := map[string]bool{}
	for _, e := range errs {
		reported[e.Path] = true
	}
	var out Errors
	var walk func(x, sch cue.Value, path []string)
	walk = func(x, sch cue.Value, path []string) {
		if x.IncompleteKind() == cue.ListKind {
			it, err := x.List()
			if err != nil {
				return
			}
			for i := 0; it.Next(); i++ {
				walk(it.Value(), sch.LookupPath(cue.MakePath(cue.AnyIndex)), append(path, fmt.Sprint(i)))
			}
			return
		}
		var names []string
		if it, err := x.Fields(); err == nil {
			for it.Next() {
				if sel := it.Selector(); sel.Type() == cue.StringLabel {
					names = append(names, sel.Unquoted())
				}
			}
		} else if it, err := sch.Fields(); err == nil {
			for it.Next() {
				if sel := it.Selector(); sel.Type() == cue.StringLabel {
					names = append(names, sel.Unquoted())
				}
			}
		} else if x.IncompleteKind()&cue.StructKind == 0 {
			if def, ok := x.Default(); ok && def.IsConcrete() {
				return
			}
			if !x.IsConcrete() && x.Err() == nil && len(path) > len(prefix) && !reported[formatPath(path)] {
				last := path[len(path)-1]
				msg := fmt.Sprintf("missing required field %q", last)
				if patternOf([]string{last}) == "*" && len(path) > 1 {
					msg = fmt.Sprintf("%q needs at least one entry", path[len(path)-2])
				}
				out = append(out, d.at(path, msg))
			}
			return
		}
		for _, n := range names {
			p := cue.MakePath(cue.Str(n))
			walk(x.LookupPath(p), sch.LookupPath(p), append(append([]string(nil), path...), n))
		}
	}
	walk(v, schema, prefix)
	return out
}

func addRequiredAccounts(dom *Domain) {
	for _, id := range []string{AccountAbuse, AccountPostmaster} {
		found := false
		for _, a := range dom.Accounts {
			if a.ID == id {
				found = true
				break
			}
		}
		if !found {
			dom.Accounts = append(dom.Accounts, Account{ID: id, Name: id})
		}
	}
}

var (
	kindsRE    = regexp.MustCompile(`^conflicting values (.+?) and (.+?) \(mismatched types (\w+) and (\w+)\)$`)
	conflictRE = regexp.MustCompile(`^conflicting values (.+) and (.+)$`)
	boundRE    = regexp.MustCompile(`^invalid value (.+) \(out of bound (.+)\)$`)
	emptyRE    = regexp.MustCompile(`^\d+ errors in empty disjunction:?$`)
)

// explain turns CUE's errors into one clear message per field: what was
// expected and what the document holds, at the document's own position.
func (d *document) explain(c *compiled, err error, prefix []string) Errors {
	type finding struct {
		path      []string
		conflicts []string // values the schema would have accepted
		bound     string
		kinds     [2]string
		other     []string
	}
	var order []string
	byPath := map[string]*finding{}
	for _, e := range cueerrors.Errors(err) {
		path := e.Path()
		if len(path) > 0 && strings.HasPrefix(path[0], "#") {
			path = path[1:]
		}
		path = append(append([]string(nil), prefix...), path...)
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if emptyRE.MatchString(msg) {
			continue
		}
		key := strings.Join(path, "\x00")
		f := byPath[key]
		if f == nil {
			f = &finding{path: path}
			byPath[key] = f
			order = append(order, key)
		}
		given := d.scalarText(path)
		if m := kindsRE.FindStringSubmatch(msg); m != nil {
			f.kinds = [2]string{m[3], m[4]}
			if m[1] == given {
				f.kinds = [2]string{m[4], m[3]}
			}
			continue
		}
		switch m := conflictRE.FindStringSubmatch(msg); {
		case m != nil:
			allowed := m[1]
			if allowed == given {
				allowed = m[2]
			}
			f.conflicts = append(f.conflicts, allowed)
		default:
			if m := boundRE.FindStringSubmatch(msg); m != nil {
				f.bound = m[2]
			} else {
				f.other = append(f.other, msg)
			}
		}
	}

	var errs Errors
	for _, key := range order {
		f := byPath[key]
		given := d.scalarText(f.path)
		last := ""
		if len(f.path) > 0 {
			last = f.path[len(f.path)-1]
		}
		switch {
		case f.bound != "":
			want := c.bounds[f.bound]
			if want == "" {
				want = "a value " + f.bound
				if strings.ContainsAny(f.bound[:1], "<>") {
					want = "a number " + f.bound
				}
			}
			errs = append(errs, d.at(f.path, fmt.Sprintf("expected %s; got %s", want, given)))
		case f.kinds[0] != "":
			got := given
			if !strings.HasPrefix(got, "a ") {
				got = article(f.kinds[1]) + " " + got
			}
			errs = append(errs, d.at(f.path, fmt.Sprintf("expected %s; got %s", article(f.kinds[0]), got)))
		case len(f.conflicts) > 0:
			sort.Strings(f.conflicts)
			if len(f.conflicts) == 1 {
				errs = append(errs, d.at(f.path, fmt.Sprintf("expected %s; got %s", f.conflicts[0], given)))
			} else {
				errs = append(errs, d.at(f.path, fmt.Sprintf("expected one of %s; got %s", strings.Join(f.conflicts, ", "), given)))
			}
		default:
			for _, msg := range f.other {
				switch {
				case msg == "field not allowed":
					if d.node(f.path) == nil {
						continue // the other side of a disjunction; not the document's field
					}
					errs = append(errs, d.keyAt(f.path, fmt.Sprintf("unknown field %q", last)))
				case strings.HasPrefix(msg, "incomplete value") || strings.Contains(msg, "required but not present"):
					if patternOf([]string{last}) == "*" && len(f.path) > 1 {
						errs = append(errs, d.at(f.path, fmt.Sprintf("%q needs at least one entry", f.path[len(f.path)-2])))
						continue
					}
					errs = append(errs, d.at(f.path, fmt.Sprintf("missing required field %q", last)))
				default:
					errs = append(errs, d.at(f.path, msg))
				}
			}
		}
	}
	if len(errs) == 0 {
		errs = Errors{d.at(prefix, err.Error())}
	}
	return errs
}

// scalarText is the document's value at path as it would appear in CUE's
// messages (strings quoted), or a word for what is there instead.
func (d *document) scalarText(path []string) string {
	n := d.node(path)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case 0:
		return "nothing"
	}
	if n.Kind != 8 { // not a scalar
		switch n.ShortTag() {
		case "!!map":
			return "a mapping"
		case "!!seq":
			return "a list"
		}
		return "a " + n.ShortTag()
	}
	switch n.ShortTag() {
	case "!!str":
		v := n.Value
		if lowercased[patternOf(path)] {
			v = strings.ToLower(v)
		}
		return fmt.Sprintf("%q", v)
	case "!!null":
		return "null"
	}
	return n.Value
}

// patternOf turns domains.3.accounts.1.id into domains.*.accounts.*.id.
func patternOf(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			p = "*"
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

func article(kind string) string {
	switch kind {
	case "int":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "struct":
		return "a mapping"
	case "list":
		return "a list"
	case "float":
		return "a number"
	case "null":
		return "a value"
	}
	return kind
}
