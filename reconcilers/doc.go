// Package reconcilers holds the reconciler contract and the engine that
// plans every reconciler, applies them in dependency order and rolls back
// on failure. Each reconciler lives in its own sub-package and owns one
// slice of the box; package registry lists them, and package facts
// declares what they tell each other.
//
// # Order
//
// The engine is built (Build) from specs: a reconciler and the names of
// those it must apply after. It also applies a reader of a fact after the
// fact's publisher. The order is a stable topological sort of those
// dependencies, the specs' order breaking ties; Build refuses a
// dependency on an unknown reconciler, a fact with no publisher or two,
// and a cycle, naming it ("dependency cycle net → dns → net: …").
//
// # Facts
//
// A reconciler tells others what only it can know (the box's public
// address, the DKIM public keys) as typed facts: Fact[T] keys declared in
// package facts, so that no reconciler imports another. A FactPublisher
// lists the facts it publishes and gives their values: as they will be
// once its plan is applied, or Unknown when only applying can tell (an
// address a DHCP server will hand out). A FactReader lists the facts it
// reads and reads them in Plan with Read; a value not known yet is shown
// in the plan as KnownAfterApply, "(known after apply)".
//
// The values a reader read are part of its step's fingerprint, so that a
// plan made before a fact moved is stale (the applier refuses it). During
// Apply, after each publisher is applied, the engine observes it again;
// when a fact moved, or became known, the readers of that fact are
// observed and planned again, with the new value, before they apply, in
// the same apply.
//
// # Triggers
//
// The daemon applies the document when it changes and resyncs the whole
// box periodically. A reconciler can also ask to run again: a Watcher
// reports events (a netlink event, a new lease), a Requeuer asks to run
// again after a delay it derives from what it observed (a certificate
// that expires). Triggers coalesces them and names the reconcilers to run
// again: those that asked and, transitively, those that read their
// facts. PlanOnly plans only those; Apply applies only them.
//
// # Ownership
//
// Every field of the document has exactly one owner: the reconciler that
// declares it in Owns, or an entry of NotApplied (a field whose
// reconciler does not exist yet: the time zone, the web administration) or ReadByNone,
// each with its reason (ownership.go). CheckOwnership, which the registry
// runs when it builds the engine, refuses a field with no owner or two,
// so that a field added to the schema cannot be silently ignored.
// Unapplied lists the changed fields that nothing applies yet, which plan,
// apply and status show ("not applied: system.timezone — no reconciler
// yet").
//
// # Errors
//
// An error that Apply marks with Transient (a busy resource, a timeout)
// is retried with backoff (Config.Retry), planning the reconciler again
// before each attempt, without rolling back the reconcilers already
// applied. Any other error is terminal, and so is a transient one once
// the attempts are spent: the engine brings every reconciler it applied
// back to the last good version. Status tells the state, the attempts and
// the last error of each reconciler.
//
// An Observer, if the engine has one, is told of each reconciler's plan
// (Observe and Plan) and of each Apply attempt, roll backs and resyncs
// included: the daemon's metrics implement it.
package reconcilers
