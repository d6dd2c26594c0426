// Command mailfountaind runs the box: it applies the desired-state
// document, keeps the box converged on it, and serves mfapply on the
// control socket of the data directory.
//
//	mailfountaind [--data DIR] -f PATH [--resync DURATION] [--log-level LEVEL]
//	              [--smtp ADDR] [--submission ADDR] [--submissions ADDR]
//	              [--pop3 ADDR] [--pop3s ADDR] [--imap ADDR] [--imaps ADDR]
//	              [--dns ADDR] [--dhcp ADDR]
//	              [--metrics ADDR] [--resolver ADDR] [--remote-port N]
//	              [--hardware auto|none|virtual[:NAME]]
//
// It serves SMTP (MX, port 25), submission (587 with STARTTLS, 465 over
// TLS), POP3 (110, 995) and IMAP (143, 993) once the applied document has
// a domain, and stops them when it has none; on a box in router mode, the
// DHCP server of the LAN (port 67 of the LAN bridge, --dhcp) while
// network.dhcp.enabled, its leases in DATA/dhcp. Each listen address is a
// flag, "off" to not serve it. An address that cannot be bound is logged
// and shown in the status, and tried again at the next apply or resync.
// --metrics ADDR serves Prometheus metrics over HTTP at /metrics
// (runtime/metrics lists them); without it nothing listens.
//
// Mail to other domains goes to the MX hosts that DNS names: --resolver
// ADDR (host:port) is the DNS server asked for MX, A, AAAA and MTA-STS
// names instead of those of /etc/resolv.conf, and --remote-port N the
// port of the remote MX hosts instead of 25. Both exist for tests and
// benchmarks on loopback; a box in service leaves them unset.
//
// --hardware selects what the network, firewall and DHCP reconcilers
// drive: auto is the box this runs on, or nothing on another machine
// (they then report "skipped: no box hardware" and touch nothing);
// virtual:NAME is a box made of network namespaces (package hw), which the
// daemon creates if missing and runs inside, as root.
//
// On box hardware it drives the front LED (runtime/led): setup, steady,
// error, off when stopped; the virtual box's LED is the file DATA/led,
// holding the pattern's name. It also makes sure of the security code of
// the warranty card (the virtual box's, DATA/security-code, is made at its
// first start).
//
// An apply made with mfapply apply --confirm-within that mfapply confirm
// does not confirm in time is undone: the daemon applies the previous
// version again (origin "confirm-timeout"), at once on start if the
// deadline passed while it was stopped (runtime/daemon).
//
// SIGHUP reads and applies the state files again; SIGTERM and SIGINT stop
// the daemon cleanly (exit 0).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/dnszone"
	"mailfountain.dev/mailfountain/runtime/supervisor"
)

// defaultDataDir is the data directory unless MAILFOUNTAIN_DATA or --data
// say otherwise.
const defaultDataDir = "/var/lib/mailfountain"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // could not start, or a hosted component failed
	exitUsage = 2
)

func main() {
	// Every accepted message waits in fsync, about 0.2 ms on a disk. A
	// goroutine blocked in a system call keeps its P until the runtime's
	// monitor hands the P to another thread, 20 us to 10 ms later, and
	// meanwhile a CPU may idle with sessions ready to run. Twice as many
	// Ps as CPUs keeps the CPUs busy (bench/inbound.sh: about 10% more
	// messages a second than with one P per CPU). GOMAXPROCS set in the
	// environment is kept.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

type options struct {
	dataDir   string
	statePath string
	resync    time.Duration
	level     slog.Level
	listen    listeners
	metrics   string // --metrics: listen address of the metrics, "" for none
	// resolver is --resolver: the DNS server of outbound delivery, ""
	// for the system's.
	resolver string
	// remotePort is --remote-port: the port of remote MX hosts.
	remotePort int
	// hardware is --hardware: the hardware the network, firewall and
	// DHCP reconcilers drive.
	hardware hw.Selection
}

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	dataDir := defaultDataDir
	if v := getenv("MAILFOUNTAIN_DATA"); v != "" {
		dataDir = v
	}
	fs := flag.NewFlagSet("mailfountaind", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dataDir, "data", dataDir, "data directory (env MAILFOUNTAIN_DATA)")
	fs.StringVar(&o.statePath, "f", "", "state file, or directory of *.yaml files (required)")
	fs.DurationVar(&o.resync, "resync", daemon.DefaultResync, "interval of drift correction (re-apply of the latest version); 0 disables it")
	o.listen.register(fs)
	fs.StringVar(&o.metrics, "metrics", "", "listen address of the Prometheus metrics (HTTP, path /metrics); none if empty")
	fs.StringVar(&o.resolver, "resolver", "", "DNS server (host:port) asked for the MX, A, AAAA and MTA-STS names of outbound mail; the system's if empty")
	fs.IntVar(&o.remotePort, "remote-port", 25, "port of the remote MX hosts outbound mail is sent to")
	hardware := getenv("MAILFOUNTAIN_HARDWARE")
	if hardware == "" {
		hardware = hw.SelectAuto
	}
	fs.StringVar(&hardware, "hardware", hardware, "hardware the network, firewall and DHCP reconcilers drive: auto (this box, or none), none, or virtual[:NAME] (a box in network namespaces, for development and tests; root) (env MAILFOUNTAIN_HARDWARE)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mailfountaind [--data DIR] -f PATH [--resync DURATION] [--log-level LEVEL] [--smtp ADDR] ... [--dns ADDR] [--dhcp ADDR] [--metrics ADDR] [--resolver ADDR] [--remote-port N] [--hardware SEL]\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nSIGHUP reloads the state files; SIGTERM or SIGINT stops the daemon.\n")
	}
	err := fs.Parse(args)
	if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.statePath == "" {
		return nil, errors.New("-f PATH is required: the state file or directory to apply and watch")
	}
	if o.dataDir == "" {
		return nil, errors.New("--data must not be empty")
	}
	if o.resync < 0 {
		return nil, fmt.Errorf("--resync %s: must not be negative", o.resync)
	}
	if o.resolver != "" {
		if _, _, err := net.SplitHostPort(o.resolver); err != nil {
			return nil, fmt.Errorf("--resolver %q: want host:port, e.g. 127.0.0.1:53", o.resolver)
		}
	}
	if o.remotePort < 1 || o.remotePort > 65535 {
		return nil, fmt.Errorf("--remote-port %d: want a port from 1 to 65535", o.remotePort)
	}
	if o.hardware, err = hw.ParseSelection(hardware); err != nil {
		return nil, fmt.Errorf("--hardware: %w", err)
	}
	if err := o.level.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	return o, nil
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := parseArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailfountaind: %v\nRun 'mailfountaind -h' for usage.\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.level}))

	// First of all, as it may run the daemon again inside a virtual box,
	// and before the signals are caught: one caught by this process image
	// would be lost to the next, and the daemon would not stop.
	box, err := hw.Start(o.hardware)
	if err != nil {
		logger.Error("mailfountaind stopped", "err", err)
		return exitError
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Once stopping, a second signal kills at once.
	context.AfterFunc(ctx, stop)
	// Caught from the start: SIGHUP's default action would kill the
	// daemon while it opens the store.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := serve(ctx, o, box, hup, logger); err != nil {
		logger.Error("mailfountaind stopped", "err", err)
		return exitError
	}
	logger.Info("mailfountaind stopped")
	return exitOK
}

func serve(ctx context.Context, o *options, box *hw.Box, hup <-chan os.Signal, logger *slog.Logger) error {
	resync := o.resync
	if resync == 0 {
		resync = -1 // daemon.Config: negative disables
	}
	// A wrong -f is found before the data directory is created or locked.
	if _, err := os.Stat(o.statePath); err != nil {
		return fmt.Errorf("state path: %w", err)
	}
	logger.Info("mailfountaind starting", "data", o.dataDir, "state", o.statePath, "resync", o.resync.String(), "hardware", hardwareName(box), "pid", os.Getpid())

	m, metricsComponent, closeMetrics, err := metricsServer(ctx, o.metrics, logger)
	if err != nil {
		return err
	}
	defer closeMetrics()

	zones := &dnszone.Live{}
	dhcpConf := &dhcpd.Live{}
	opts := []applier.Option{applier.WithZones(zones), applier.WithDHCP(dhcpConf), applier.WithBox(box)}
	if m != nil {
		opts = append(opts, applier.WithObserver(m))
	}
	app, err := applier.Open(ctx, o.dataDir, logger, opts...)
	if err != nil {
		return err
	}
	defer app.Close()

	// Take the control socket before applying anything: it fails when
	// another daemon serves this data directory.
	ctl, err := control.Listen(o.dataDir, app, logger)
	if err != nil {
		return err
	}
	defer ctl.Close()

	deps := &mailDeps{app: app, metrics: m, logger: logger}
	out, err := openOutbound(ctx, o, app, &injector{server: deps.injectServer, log: logger.With("component", "queue")}, m, logger)
	if err != nil {
		return err
	}
	defer out.Close()
	deps.out = out
	ctl.ServeQueue(out.queue)

	// The zones the DNS reconciler publishes: those on disk from the
	// start, then each apply's.
	dns := newDNSServer(zones, m, logger)
	// The settings the DHCP reconciler publishes: the applied ones from
	// the start, then each apply's; the leases on disk from the start.
	dhcp, err := newDHCPServer(dhcpConf, o.dataDir, box, m, logger)
	if err != nil {
		return err
	}
	servers, err := supervisor.New(supervisor.Config{Listen: o.listen.overrides(), Logger: logger}, serverKinds(deps, dns, dhcp, &o.listen)...)
	if err != nil {
		return err
	}
	defer servers.Stop()
	ctl.ServeServers(servers.Status)

	checkSecurityCode(box, o.dataDir, logger)
	cfg := daemon.Config{StatePath: o.statePath, Resync: resync, Logger: logger, Metrics: m, Servers: servers}
	// The WAN link the network reconciler runs, for the status (none
	// without box hardware).
	if w := app.WAN(); w != nil && box != nil {
		cfg.WAN = w
	}
	ledLoop, ledSource := frontLED(box, o.dataDir, m, logger)
	if ledLoop != nil {
		cfg.LED = ledLoop
	}
	d, err := daemon.New(cfg, app)
	if err != nil {
		return err
	}
	ctl.SetStatus(func() any { return d.Status() })
	d.Host(daemon.ComponentFunc{ComponentName: "control", Serve: ctl.Serve})
	d.Host(daemon.ComponentFunc{ComponentName: "queue", Serve: out.queue.Run})
	d.Host(daemon.ComponentFunc{ComponentName: "dns", Serve: dns.Run})
	d.Host(daemon.ComponentFunc{ComponentName: "dhcp", Serve: dhcp.Run})
	if metricsComponent != nil {
		d.Host(metricsComponent)
	}
	if ledLoop != nil {
		ledSource.d = d
		d.Host(ledLoop)
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		for {
			select {
			case <-hup:
				logger.Info("SIGHUP: reloading the state files")
				d.Reload()
			case <-done:
				return
			}
		}
	})

	return d.Run(ctx)
}

// hardwareName says what hardware the daemon drives, for its log.
func hardwareName(box *hw.Box) string {
	switch {
	case box == nil:
		return "none"
	case box.Virtual != "":
		return "virtual box " + box.Virtual
	}
	return box.Profile.Model
}
