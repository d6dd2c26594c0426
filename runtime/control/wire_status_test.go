package control

import (
	"encoding/json"
	"reflect"
	"testing"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
)

// A result crosses the socket whole: the attempts of a retried
// reconciler and its last error included.
func TestResultThroughTheWire(t *testing.T) {
	res := &applier.Result{Version: 3, Changed: true, Statuses: []reconcilers.Status{
		{Reconciler: "accounts", State: reconcilers.StateChanged, Changes: 2, Attempts: 3, LastError: "database is locked"},
		{Reconciler: "mail", State: reconcilers.StateFailed, Error: "no such file", Changes: 1, Attempts: 1, LastError: "no such file"},
	}}
	b, err := json.Marshal(toWireResult(res))
	if err != nil {
		t.Fatal(err)
	}
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	if got := w.result(); !reflect.DeepEqual(got, res) {
		t.Fatalf("through the wire:\n%+v\nwant\n%+v", got, res)
	}
}
