// Package schematest loads state documents for tests. Only tests import
// it.
package schematest

import (
	"testing"

	"mailfountain.dev/mailfountain/schema"
)

// Load loads doc, one state file readable by its owner only, through the
// schema (defaults and rules); a document that does not load fails t.
func Load(t testing.TB, doc string) *schema.State {
	t.Helper()
	st, err := schema.Load([]schema.Source{{Name: "state.yaml", Data: []byte(doc), Mode: 0o600}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}
