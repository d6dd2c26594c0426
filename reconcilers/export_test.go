package reconcilers

// CheckOwnershipOf is checkOwnership with a list of fields of the test's
// choosing: a schema with a field more than State's.
var CheckOwnershipOf = checkOwnership

// NewEngine is Build over rs, in the given order where their facts allow,
// with the zero Config; it panics where Build fails (the tests fix the
// reconcilers' relations).
func NewEngine(rs ...Reconciler) *Engine {
	specs := make([]Spec, len(rs))
	for i, r := range rs {
		specs[i] = Spec{Reconciler: r}
	}
	e, err := Build(Config{}, specs...)
	if err != nil {
		panic(err)
	}
	return e
}
