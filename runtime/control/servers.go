package control

import (
	"context"
	"net/http"

	"mailfountain.dev/mailfountain/runtime/supervisor"
)

// pathServers lists the daemon's servers: mfapply status servers.
const pathServers = "/v1/status/servers"

// ServeServers has the socket answer with f's list of the daemon's
// servers; until it is called, the list is empty. Safe to call while
// serving.
func (s *Server) ServeServers(f func() []supervisor.ServerStatus) {
	s.servers.Store(&f)
}

func (s *Server) serverStatus(w http.ResponseWriter, _ *http.Request) {
	out := []supervisor.ServerStatus{}
	if f := s.servers.Load(); f != nil {
		if ss := (*f)(); ss != nil {
			out = ss
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// Servers lists the daemon's servers: each endpoint serving, draining,
// failed or off.
func (c *Client) Servers(ctx context.Context) ([]supervisor.ServerStatus, error) {
	var ss []supervisor.ServerStatus
	if err := c.do(ctx, http.MethodGet, pathServers, nil, nil, &ss); err != nil {
		return nil, err
	}
	return ss, nil
}
