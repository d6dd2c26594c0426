package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/imapd"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/pop3d"
	"mailfountain.dev/mailfountain/runtime/smtpd"
	"mailfountain.dev/mailfountain/runtime/tlscert"
)

// listener is a server's listen address flag.
type listener struct {
	flag, what, def string
	addr            string // "" or "off": not served
}

// listeners are the servers' listen addresses, each a flag, defaulting to
// the standard ports on every address of the box.
type listeners struct {
	smtp, submission, submissions, pop3, pop3s, imap, imaps listener
}

func (l *listeners) all() []*listener {
	return []*listener{&l.smtp, &l.submission, &l.submissions, &l.pop3, &l.pop3s, &l.imap, &l.imaps}
}

func (l *listeners) register(fs *flag.FlagSet) {
	*l = listeners{
		smtp:        listener{flag: "smtp", what: "SMTP, mail from the Internet (MX)", def: ":25"},
		submission:  listener{flag: "submission", what: "mail submission with STARTTLS", def: ":587"},
		submissions: listener{flag: "submissions", what: "mail submission over TLS", def: ":465"},
		pop3:        listener{flag: "pop3", what: "POP3 with STLS", def: ":110"},
		pop3s:       listener{flag: "pop3s", what: "POP3 over TLS", def: ":995"},
		imap:        listener{flag: "imap", what: "IMAP with STARTTLS", def: ":143"},
		imaps:       listener{flag: "imaps", what: "IMAP over TLS", def: ":993"},
	}
	for _, x := range l.all() {
		fs.StringVar(&x.addr, x.flag, x.def, fmt.Sprintf("listen address of %s; \"off\" to not serve it", x.what))
	}
}

func (l *listener) off() bool { return l.addr == "" || strings.EqualFold(l.addr, "off") }

// serveFunc serves one listener until ctx is done.
type serveFunc func(ctx context.Context, ln net.Listener) error

// mailServers opens the listeners and builds the servers that serve them.
// The listeners are taken before anything else starts, so that a port in
// use stops the daemon at once with a clear error. It returns the
// components to host and a function that closes the listeners if they are
// never served.
func mailServers(ctx context.Context, o *options, app *applier.Applier, m *metrics.Metrics, logger *slog.Logger) (_ []daemon.Component, _ func(), err error) {
	lns := map[*listener]net.Listener{}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	for _, x := range o.listen.all() {
		if x.off() {
			continue
		}
		// SMTP sessions end by their own timeouts: TCP keep-alives would
		// only cost four system calls per connection. POP3 and IMAP
		// sessions may idle for long (IDLE) and keep them.
		lc := net.ListenConfig{}
		if x == &o.listen.smtp || x == &o.listen.submission || x == &o.listen.submissions {
			lc.KeepAlive = -1
		}
		ln, err := lc.Listen(ctx, "tcp", x.addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen for %s (--%s): %w", x.what, x.flag, err)
		}
		lns[x] = ln
	}
	if len(lns) == 0 {
		return nil, closeAll, nil
	}

	st := app.Store()
	settings := app.Settings()
	md, err := maildir.New(st.Dir(), logger.With("component", "maildir"))
	if err != nil {
		return nil, nil, err
	}
	// Before any server: deliveries a crash interrupted are finished or
	// undone, so no client sees half of one.
	if err := md.Recover(ctx); err != nil {
		return nil, nil, fmt.Errorf("recover interrupted deliveries: %w", err)
	}
	certs, err := tlscert.New(st.Dir(), settings, logger.With("component", "tls"))
	if err != nil {
		return nil, nil, err
	}
	tlsConf := certs.Config()
	authn := auth.NewAuthenticator(st, logger.With("component", "auth")).Observe(m)

	var cs []daemon.Component
	add := func(x *listener, serve serveFunc) {
		ln, ok := lns[x]
		if !ok {
			return
		}
		logger.Info("listening", "server", x.flag, "addr", ln.Addr().String())
		cs = append(cs, daemon.ComponentFunc{ComponentName: x.flag, Serve: func(ctx context.Context) error { return serve(ctx, ln) }})
	}

	if lns[&o.listen.smtp] != nil || lns[&o.listen.submission] != nil || lns[&o.listen.submissions] != nil {
		resolver := mailauth.NewResolver(nil, 0)
		smtp, err := smtpd.New(smtpd.Config{
			Settings:  settings,
			TLS:       tlsConf,
			Directory: st,
			Deliverer: md,
			Auth:      authn,
			Verifier:  mailauth.NewVerifier(resolver, 0, logger.With("component", "mailauth")),
			TempDir:   st.Dir(),
			Logger:    logger.With("component", "smtp"),
			Metrics:   m,
		})
		if err != nil {
			return nil, nil, err
		}
		add(&o.listen.smtp, smtp.ServeMX)
		add(&o.listen.submission, smtp.ServeSubmission)
		add(&o.listen.submissions, smtp.ServeSubmissions)
	}
	if lns[&o.listen.pop3] != nil || lns[&o.listen.pop3s] != nil {
		pop, err := pop3d.New(pop3d.Config{Settings: settings, TLS: tlsConf, Maildir: md, Mailboxes: st, Auth: authn, Logger: logger.With("component", "pop3"), Metrics: m})
		if err != nil {
			return nil, nil, err
		}
		add(&o.listen.pop3, pop.Serve)
		add(&o.listen.pop3s, pop.ServeTLS)
	}
	if lns[&o.listen.imap] != nil || lns[&o.listen.imaps] != nil {
		imap, err := imapd.New(imapd.Config{Settings: settings, TLS: tlsConf, Maildir: md, Mailboxes: st, Auth: authn, Logger: logger.With("component", "imap"), Metrics: m})
		if err != nil {
			return nil, nil, err
		}
		add(&o.listen.imap, imap.Serve)
		add(&o.listen.imaps, imap.ServeTLS)
	}
	if len(cs) != len(lns) {
		return nil, nil, errors.New("a listener has no server")
	}
	return cs, closeAll, nil
}
