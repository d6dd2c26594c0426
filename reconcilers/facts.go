package reconcilers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// KnownAfterApply is what a plan shows for a value that depends on a fact
// its publisher learns only by applying (an address a DHCP server hands
// out, a key that is generated).
const KnownAfterApply = "(known after apply)"

// Fact is the key of a fact of type T that one reconciler publishes and
// others read. The keys of the box are declared in package
// reconcilers/facts, so that no reconciler imports another.
type Fact[T any] struct{ name string }

// NewFact returns the key of the fact named name.
func NewFact[T any](name string) Fact[T] { return Fact[T]{name: name} }

// Name is the fact's name, as plans and errors show it.
func (f Fact[T]) Name() string { return f.name }

func (f Fact[T]) factName() string { return f.name }

// FactKey is a fact's key whatever its type, as Reads and Publishes list
// them.
type FactKey interface{ factName() string }

// FactPublisher is a Reconciler that publishes facts.
type FactPublisher interface {
	// Publishes lists the facts it publishes; a fact has one publisher.
	Publishes() []FactKey
	// Facts returns the facts as they will be once planned is applied to
	// live, with Unknown for a value that only applying can tell; with
	// planned empty, as they are in live. After an apply, the engine
	// observes the publisher again and calls Facts with no changes.
	Facts(live Live, planned []Change) Facts
}

// FactReader is a Reconciler whose Plan reads facts, with Read.
type FactReader interface {
	// Reads lists the facts its Plan reads: it applies after their
	// publishers, and it is planned again when one of them moves.
	Reads() []FactKey
}

// Facts are values of facts, by name, as a publisher gives them.
type Facts struct {
	m map[string]factValue
}

type factValue struct {
	v     any
	known bool
}

// Publish sets the value of fact key in fs.
func Publish[T any](fs *Facts, key Fact[T], v T) {
	fs.set(key.name, factValue{v: v, known: true})
}

// Unknown marks fact key in fs as known only after apply.
func Unknown[T any](fs *Facts, key Fact[T]) {
	fs.set(key.name, factValue{})
}

func (fs *Facts) set(name string, v factValue) {
	if fs.m == nil {
		fs.m = map[string]factValue{}
	}
	fs.m[name] = v
}

// encode is the value's canonical text, for fingerprints and for telling
// whether a fact moved.
func (v factValue) encode() string {
	if !v.known {
		return KnownAfterApply
	}
	b, err := json.Marshal(v.v)
	if err != nil {
		return fmt.Sprintf("%#v", v.v)
	}
	return string(b)
}

// factsKey is the context key of the facts a Plan may read.
type factsKey struct{}

// readable is what Read finds in Plan's context: the facts the planned
// reconciler declared it reads.
type readable struct {
	reconciler string
	values     map[string]factValue
}

// withFacts returns ctx carrying the facts of reads, from table, for the
// Plan of reconciler.
func withFacts(ctx context.Context, reconciler string, reads []string, table map[string]factValue) (context.Context, string) {
	if len(reads) == 0 {
		return ctx, ""
	}
	r := readable{reconciler: reconciler, values: make(map[string]factValue, len(reads))}
	for _, n := range reads {
		r.values[n] = table[n]
	}
	return context.WithValue(ctx, factsKey{}, r), factsDigest(reads, r.values)
}

// factsDigest identifies the values of the facts read, so that a plan
// made from other values is stale.
func factsDigest(names []string, values map[string]factValue) string {
	names = slices.Sorted(slices.Values(names))
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, values[n].encode())
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Read returns the value of fact key to a Plan that declared it in Reads:
// known is false when the value will be known only after apply (show it
// as KnownAfterApply). A fact its publisher has no value for reads as
// T's zero value, known. Reading a fact not declared in Reads is an
// error: the engine orders and re-plans reconcilers by their declared
// reads.
func Read[T any](ctx context.Context, key Fact[T]) (v T, known bool, err error) {
	r, ok := ctx.Value(factsKey{}).(readable)
	if !ok {
		return v, false, fmt.Errorf("read fact %s: not in a Plan that declares it in Reads", key.name)
	}
	fv, ok := r.values[key.name]
	if !ok {
		return v, false, fmt.Errorf("read fact %s: %s does not declare it in Reads", key.name, r.reconciler)
	}
	if !fv.known {
		return v, false, nil
	}
	if fv.v == nil {
		return v, true, nil
	}
	t, ok := fv.v.(T)
	if !ok {
		return v, false, fmt.Errorf("read fact %s: published as %T, read as %T", key.name, fv.v, v)
	}
	return t, true, nil
}

// Show is v as a plan's detail shows it, or KnownAfterApply.
func Show[T any](v T, known bool) string {
	if !known {
		return KnownAfterApply
	}
	return fmt.Sprint(v)
}

// factNames returns the names of keys.
func factNames(keys []FactKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.factName()
	}
	return out
}

// fingerprintWithFacts is the fingerprint of a step: the live state's,
// and the values of the facts its plan read.
func fingerprintWithFacts(live, facts string) string {
	if facts == "" {
		return live
	}
	return live + " " + factsMark + facts
}

// livePart is the live state's part of a step's fingerprint.
func livePart(fp string) string {
	if i := strings.LastIndex(fp, " "+factsMark); i >= 0 {
		return fp[:i]
	}
	return fp
}

// factsMark separates, in a step's fingerprint, the live state's from the
// digest of the facts read.
const factsMark = "facts:"

// FingerprintChange says what moved between two fingerprints of one
// reconciler's step: "its live state", "the facts it reads", or "" when
// they are the same.
func FingerprintChange(planned, fresh string) string {
	if planned == fresh {
		return ""
	}
	if livePart(planned) == livePart(fresh) {
		return "the facts it reads"
	}
	return "its live state"
}
