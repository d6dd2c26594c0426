package reconcilers

// Forgetter is a Reconciler that may answer Observe from an earlier
// observation while nothing in the process changed what it owns (the
// accounts reconciler does, for large directories).
type Forgetter interface {
	// Forget makes the next Observe look at the live state afresh.
	Forget()
}

// Forget makes every reconciler that keeps an earlier observation look
// afresh at its next Observe. The periodic resync calls it first, so that
// drift made behind the box's back is found.
func (e *Engine) Forget() {
	for _, r := range e.rs {
		if f, ok := r.(Forgetter); ok {
			f.Forget()
		}
	}
}
