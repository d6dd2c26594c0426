package daemon

import (
	"context"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// served is the version the daemon's servers were last converged on.
// Only Run's goroutine touches it.
type served struct {
	version int
	hash    string
	done    bool
}

// convergeServers makes the servers follow the latest applied version:
// after an apply or rollback, whoever asked for it, and at a resync, which
// also tries again what failed to start (a port in use). v, st and err
// are the caller's read of the latest version (latest).
func (d *Daemon) convergeServers(ctx context.Context, v *store.Version, st *schema.State, err error) {
	sup := d.cfg.Servers
	if sup == nil {
		return
	}
	if err != nil {
		d.log.Error("servers: read the latest version", "err", err)
		return
	}
	cur := served{done: true}
	if v != nil {
		cur.version, cur.hash = v.N, v.StateHash
	}
	if cur == d.served && !sup.Failing() {
		return
	}
	sup.Converge(ctx, st)
	d.served = cur
}

// serverStatus is the status of the servers, if the daemon runs any.
func (d *Daemon) serverStatus() []supervisor.ServerStatus {
	if d.cfg.Servers == nil {
		return nil
	}
	return d.cfg.Servers.Status()
}
