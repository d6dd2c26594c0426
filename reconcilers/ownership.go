package reconcilers

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"mailfountain.dev/mailfountain/schema"
)

// Every field of the document has exactly one owner: the reconciler that
// converges it (Reconciler.Owns), or one of the two lists below, each
// entry with its reason. CheckOwnership, run when the reconcilers are put
// together, refuses a field with no owner or with two: a field added to
// the schema cannot be silently ignored by the box.
//
// Paths are those of schema.Fields ("network.dhcp.start",
// "domains[].accounts"); a path that names a section owns every field in
// it.

// Sections whose reconciler does not exist yet; NotApplied says which
// fields wait for each.
const (
	SectionSystem = "system"
	SectionWeb    = "web administration"
)

// ReasonNoReconciler is what plan and status say of a changed field that
// nothing applies yet.
const ReasonNoReconciler = "no reconciler yet"

// ReasonNoHardware is the SkipReason of the reconcilers of the box's
// hardware (network, firewall, DHCP) on a machine that is not a box: they
// touch nothing of the host's network.
const ReasonNoHardware = "no box hardware"

// Skipper is a Reconciler that may have nothing to drive. While
// SkipReason is not "", its Plan returns no change for the fields it owns
// (it may still observe and publish facts), its status after an apply is
// StateSkipped with the reason, and plan, apply and status list its
// changed fields as not applied, with the reason.
type Skipper interface {
	SkipReason() string
}

// PartSkipper is a Skipper that, while skipped, still applies some of the
// fields it owns (the network reconciler keeps network.public_address
// without box hardware): SkippedFields lists those it does not, which
// plan, apply and status list as not applied instead of all it owns.
type PartSkipper interface {
	Skipper
	SkippedFields() []string
}

// Unowned is a field, or a section of fields, that no reconciler owns.
type Unowned struct {
	Path string
	// Section is, for a field not applied yet, the part of the box whose
	// reconciler will own it.
	Section string
	// Why says what the field is for, and what is missing or why nothing
	// needs to read it.
	Why string
}

// NotApplied lists the fields that no reconciler applies yet. A document
// may set them and they are validated, but changing them changes nothing
// on the box: plan and apply say so ("not applied: system.timezone — no
// reconciler yet"), and status lists those of the applied document. When
// a section's reconciler arrives, its fields move from here to its Owns.
func NotApplied() []Unowned {
	return []Unowned{
		{"system.timezone", SectionSystem, "the time zone of the box's clock; nothing sets it yet (the servers write times in UTC)"},
		{"system.admin.password_hash", SectionWeb, "the administrator's password of the web administration, which does not exist yet"},
	}
}

// ReadByNone lists the fields that no reconciler reads, and never will:
// changing them alone changes nothing on the box, by design.
func ReadByNone() []Unowned {
	return []Unowned{
		{Path: "system.model", Why: "it describes the hardware rather than configuring it: the schema's rules check the document against it (S100 and S200 serve one domain and have no managers); the ports the network, firewall and DHCP reconcilers drive are those of the hardware the box runs on (package hw, --hardware), not the document's word"},
		{Path: "system.language", Why: "only the loader reads it: it is the language of the domains that name none (domains[].language, which the accounts reconciler owns); nothing else speaks it yet"},
	}
}

// FieldReader is implemented by a reconciler that reads fields of the
// document it does not own (the mail reconciler reads the LAN's address,
// which the network reconciler will own). CheckOwnership checks that they
// exist. (Facts that a reconciler reads are FactReader's Reads.)
type FieldReader interface {
	ReadsFields() []string
}

// UnappliedField is a changed field of a document that no reconciler
// applies yet.
type UnappliedField struct {
	// Path is the changed path: "network.dhcp.start",
	// "domains[ma-societe.fr].dns.hosts".
	Path string `json:"path"`
	// Section is the part of the box whose reconciler will apply it, or
	// the skipped reconciler that owns it.
	Section string `json:"section"`
	// Reason is ReasonNoReconciler, or a skipped reconciler's SkipReason.
	Reason string `json:"reason"`
}

// String is the line plan, apply and status print.
func (u UnappliedField) String() string {
	return fmt.Sprintf("not applied: %s — %s (%s)", u.Path, u.Reason, u.Section)
}

// Unapplied lists the fields that differ from old (nil: nothing applied
// yet) to new and that no reconciler applies, in the document's order.
func Unapplied(old, new *schema.State) []UnappliedField {
	return unapplied(old, new, nil)
}

// Unapplied is the package's Unapplied plus the changed fields owned by
// the engine's skipped reconcilers (Skipper), with the reason they give.
func (e *Engine) Unapplied(old, new *schema.State) []UnappliedField {
	var skipped []UnappliedField
	for _, r := range e.rs {
		s, ok := r.(Skipper)
		if !ok {
			continue
		}
		if why := s.SkipReason(); why != "" {
			fields := r.Owns()
			if ps, ok := r.(PartSkipper); ok {
				fields = ps.SkippedFields()
			}
			for _, p := range fields {
				skipped = append(skipped, UnappliedField{Path: p, Section: r.Name(), Reason: why})
			}
		}
	}
	return unapplied(old, new, skipped)
}

// unapplied lists the changed fields of NotApplied and of extra (whose
// Path is a path of schema.Fields), in the document's order.
func unapplied(old, new *schema.State, extra []UnappliedField) []UnappliedField {
	var all []UnappliedField
	for _, u := range NotApplied() {
		all = append(all, UnappliedField{Path: u.Path, Section: u.Section, Reason: ReasonNoReconciler})
	}
	all = append(all, extra...)
	paths := make([]string, len(all))
	for i, u := range all {
		paths[i] = u.Path
	}
	var out []UnappliedField
	for _, c := range schema.ChangedPaths(old, new, paths...) {
		for _, u := range all {
			if covers(u.Path, c.Field) {
				u.Path = c.Path
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// covers reports whether path is field or a section holding it.
func covers(path, field string) bool { return schema.Covers(path, field) }

// Owner is the name of the engine's reconciler that owns field (a path of
// schema.Fields), or "" when none does (NotApplied, ReadByNone).
func (e *Engine) Owner(field string) string {
	for _, r := range e.rs {
		for _, p := range r.Owns() {
			if covers(p, field) {
				return r.Name()
			}
		}
	}
	return ""
}

// CheckOwnership checks that every field of the schema has exactly one
// owner among rs and the lists NotApplied and ReadByNone, and that every
// path they name (and every path a FieldReader reads) is one of the
// schema. The engine's registry calls it when it is built.
func CheckOwnership(rs []Reconciler) error {
	return checkOwnership(schema.Fields(), rs)
}

func checkOwnership(fields []string, rs []Reconciler) error {
	type claim struct{ path, by string }
	var claims []claim
	for _, r := range rs {
		for _, p := range r.Owns() {
			claims = append(claims, claim{p, "reconciler " + r.Name()})
		}
	}
	for _, u := range NotApplied() {
		claims = append(claims, claim{u.Path, "NotApplied (" + u.Section + ")"})
	}
	for _, u := range ReadByNone() {
		claims = append(claims, claim{u.Path, "ReadByNone"})
	}

	var errs []error
	exists := func(p string) bool {
		return slices.ContainsFunc(fields, func(f string) bool { return covers(p, f) })
	}
	for _, c := range claims {
		if !exists(c.path) {
			errs = append(errs, fmt.Errorf("%s names %s, which is no field of the schema", c.by, c.path))
		}
	}
	for _, r := range rs {
		if fr, ok := r.(FieldReader); ok {
			for _, p := range fr.ReadsFields() {
				if !exists(p) {
					errs = append(errs, fmt.Errorf("reconciler %s reads %s, which is no field of the schema", r.Name(), p))
				}
			}
		}
	}
	for _, f := range fields {
		var owners []string
		for _, c := range claims {
			if covers(c.path, f) {
				owners = append(owners, c.by)
			}
		}
		switch len(owners) {
		case 0:
			errs = append(errs, fmt.Errorf("field %s has no owner: a reconciler must own it (Owns), or reconcilers.NotApplied or ReadByNone list it with the reason", f))
		case 1:
		default:
			errs = append(errs, fmt.Errorf("field %s has %d owners: %s", f, len(owners), strings.Join(owners, ", ")))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ownership of the document's fields: %w", errors.Join(errs...))
	}
	return nil
}
