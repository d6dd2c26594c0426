package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"mailfountain.dev/mailfountain/runtime/dnsd"
	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// serve serves live at addr over UDP and TCP until ctx is done.
func serve(ctx context.Context, live *dnszone.Live, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := dnsd.New(dnsd.Config{Zones: live, Logger: logger})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for _, f := range []func() error{
		func() error { return srv.Run(ctx) },
		func() error { return srv.ServeUDP(ctx, pc) },
		func() error { return srv.ServeTCP(ctx, ln) },
	} {
		wg.Go(func() {
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- err
				cancel()
			}
		})
	}
	fmt.Fprintln(os.Stderr, "listening", pc.LocalAddr())
	wg.Wait()
	close(errs)
	return <-errs
}
