package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/supervisor"
)

// metricsServer listens on addr (--metrics) and returns the metrics the
// servers and the daemon report to, with the component that serves them
// and a function that closes the listener if it is never served. Without
// --metrics nothing listens, and the metrics are nil: they record nothing.
func metricsServer(ctx context.Context, addr string, logger *slog.Logger) (*metrics.Metrics, daemon.Component, func(), error) {
	if supervisor.IsOff(addr) { // like the listen flags
		return nil, nil, func() {}, nil
	}
	m, err := metrics.New(prometheus.NewRegistry(), logger.With("component", "metrics"))
	if err != nil {
		return nil, nil, nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen for the metrics (--metrics): %w", err)
	}
	logger.Info("listening", "server", "metrics", "addr", ln.Addr().String(), "path", metrics.Path)
	c := daemon.ComponentFunc{ComponentName: "metrics", Serve: func(ctx context.Context) error { return m.Serve(ctx, ln) }}
	return m, c, func() { ln.Close() }, nil
}
