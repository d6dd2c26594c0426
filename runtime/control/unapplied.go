package control

import (
	"context"
	"net/http"

	"mailfountain.dev/mailfountain/reconcilers"
)

// pathUnapplied serves the fields of the applied document that no
// reconciler applies yet (mfapply status).
const pathUnapplied = "/v1/status/unapplied"

type wireUnapplied struct {
	Version   int                          `json:"version"`
	Unapplied []reconcilers.UnappliedField `json:"unapplied"`
}

func (s *Server) unapplied(w http.ResponseWriter, r *http.Request) {
	n, fields, err := s.a.Unapplied(r.Context())
	if err != nil {
		s.fail(w, r, err, nil)
		return
	}
	if fields == nil {
		fields = []reconcilers.UnappliedField{}
	}
	writeJSON(w, http.StatusOK, wireUnapplied{Version: n, Unapplied: fields})
}

// Unapplied returns the latest version's number and the fields of its
// document that no reconciler applies yet.
func (c *Client) Unapplied(ctx context.Context) (int, []reconcilers.UnappliedField, error) {
	var w wireUnapplied
	if err := c.do(ctx, http.MethodGet, pathUnapplied, nil, nil, &w); err != nil {
		return 0, nil, err
	}
	return w.Version, w.Unapplied, nil
}
