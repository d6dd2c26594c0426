package reconcilers

import (
	"context"
	"fmt"
	"time"

	"mailfountain.dev/mailfountain/schema"
)

// Op is the kind of a planned change.
type Op string

const (
	Create Op = "+"
	Update Op = "~"
	Delete Op = "-"
)

// Change is one planned step from the live state to the desired state.
type Change struct {
	Op       Op     `json:"op"`
	Resource string `json:"resource"` // kind and name: "account rene.ricard@ma-societe.fr"
	Detail   string `json:"detail,omitempty"`
	// Payload carries what the reconciler's Apply needs; it never leaves
	// the process (plan files are recomputed, not replayed).
	Payload any `json:"-"`
}

func (c Change) String() string {
	if c.Detail == "" {
		return fmt.Sprintf("%s %s", c.Op, c.Resource)
	}
	return fmt.Sprintf("%s %s (%s)", c.Op, c.Resource, c.Detail)
}

// Live is what a reconciler observed of the slice it owns.
type Live interface {
	// Fingerprint identifies the observed state: two observations with the
	// same fingerprint would produce the same plan for the same document.
	Fingerprint() string
}

// Reconciler converges one slice of the box. It is level-triggered: Plan
// always starts from a fresh observation, never from what it did before.
type Reconciler interface {
	Name() string
	// Owns lists the fields of the document it converges, as paths of
	// schema.Fields ("system.hostname", "domains[].accounts"): each field
	// has exactly one owner (see CheckOwnership).
	Owns() []string
	Observe(ctx context.Context) (Live, error)
	// Plan lists, in order, the changes that take live to desired. An empty
	// plan means in sync.
	Plan(ctx context.Context, live Live, desired *schema.State) ([]Change, error)
	// Apply carries out changes that Plan returned; it is idempotent and
	// atomic where the target allows.
	Apply(ctx context.Context, changes []Change) error
}

// Watcher is a Reconciler whose live state moves on its own (a netlink
// event, a new DHCP lease): Watch runs until ctx is done and calls notify
// for each event; the daemon then runs the reconciler again, with those
// that read its facts. Bursts of events coalesce into one run.
type Watcher interface {
	Watch(ctx context.Context, notify func()) error
}

// Requeuer is a Reconciler that must run again after a while even when
// nothing tells it to (a certificate that expires).
type Requeuer interface {
	// RequeueAfter is, from what it observed, how long until it should run
	// again; zero or less for not before the next resync.
	RequeueAfter(live Live) time.Duration
}

// Observer is told what the engine does; the daemon's metrics implement it.
type Observer interface {
	Planned(reconciler string, took time.Duration, changes int, err error)
	Applied(reconciler string, took time.Duration, changes int, err error)
}
