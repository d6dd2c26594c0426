package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/imapd"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/pop3d"
	"mailfountain.dev/mailfountain/runtime/smtpd"
	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/runtime/tlscert"
	"mailfountain.dev/mailfountain/schema"
)

// listener is a server's listen address flag.
type listener struct {
	flag, what, def string
	addr            string // "" or "off": not served
}

// listeners are the servers' listen addresses, each a flag, defaulting to
// the standard ports on every address of the box.
type listeners struct {
	smtp, submission, submissions, pop3, pop3s, imap, imaps, dns, dhcp listener
}

func (l *listeners) all() []*listener {
	return []*listener{&l.smtp, &l.submission, &l.submissions, &l.pop3, &l.pop3s, &l.imap, &l.imaps, &l.dns, &l.dhcp}
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
		dns:         listener{flag: "dns", what: "DNS (UDP and TCP)", def: ":53"},
		dhcp:        listener{flag: "dhcp", what: "DHCP (UDP, on the LAN bridge)", def: ":67"},
	}
	for _, x := range l.all() {
		fs.StringVar(&x.addr, x.flag, x.def, fmt.Sprintf("listen address of %s; \"off\" to not serve it", x.what))
	}
}

func (l *listener) off() bool { return supervisor.IsOff(l.addr) }

// overrides are the listen flags as the supervisor takes them: they
// override the addresses the servers' rules give.
func (l *listeners) overrides() map[string]string {
	m := map[string]string{}
	for _, x := range l.all() {
		m[x.flag] = x.addr
	}
	// One flag for DNS's two endpoints.
	m[dnsTCP] = l.dns.addr
	return m
}

// endpoint is the default endpoint of a listen flag. SMTP sessions end by
// their own timeouts: TCP keep-alives would only cost system calls. POP3
// and IMAP sessions may idle for long (IDLE) and keep them.
func (l *listener) endpoint(noKeepAlive bool) supervisor.Endpoint {
	return supervisor.Endpoint{Name: l.flag, Addr: l.def, NoKeepAlive: noKeepAlive}
}

// serveFunc serves one listener until ctx is done.
type serveFunc func(ctx context.Context, ln net.Listener) error

// instance is a built server: how it serves each of its endpoints.
type instance map[string]serveFunc

func (in instance) Serve(ctx context.Context, endpoint string, ln net.Listener) error {
	serve, ok := in[endpoint]
	if !ok {
		ln.Close()
		return fmt.Errorf("no endpoint %s", endpoint)
	}
	return serve(ctx, ln)
}

// noDomain is why the mail servers do not run on a box whose document
// has no domain (a fresh box): there is no address to receive mail for
// and no account to log in, so an open port would only refuse.
const noDomain = "no domain in the document"

// mailWanted is the rule of the mail servers: they run once the box has a
// domain, from the apply that adds the first one.
func mailWanted(st *schema.State) bool { return len(st.Domains) > 0 }

// serverKinds is the registry of the servers the box runs, each with the
// rule that says when the applied document wants it. A server to come is
// one more entry.
func serverKinds(deps *mailDeps, dns *dnsServer, dhcp *dhcpServer, l *listeners) []supervisor.Kind {
	mail := func(eps ...supervisor.Endpoint) func(*schema.State) (supervisor.Spec, string) {
		return func(st *schema.State) (supervisor.Spec, string) {
			if !mailWanted(st) {
				return supervisor.Spec{}, noDomain
			}
			// Settings come from the document too, but the servers read
			// them live: no configuration here needs a new instance. (Were
			// one added: a new instance counts its connections, and pop3d
			// locks its maildrops, apart from the old one while it drains.)
			return supervisor.Spec{Endpoints: eps}, ""
		}
	}
	return []supervisor.Kind{
		{
			Name:  "smtp",
			Want:  mail(l.smtp.endpoint(true), l.submission.endpoint(true), l.submissions.endpoint(true)),
			Build: deps.smtp,
		},
		{
			Name:  "pop3",
			Want:  mail(l.pop3.endpoint(false), l.pop3s.endpoint(false)),
			Build: deps.pop3,
		},
		{
			Name:  "imap",
			Want:  mail(l.imap.endpoint(false), l.imaps.endpoint(false)),
			Build: deps.imap,
		},
		dns.kind(l.dns),
		dhcp.kind(l.dhcp),
	}
}

// mailDeps is what the mail servers share, made by the first of them
// built.
type mailDeps struct {
	app     *applier.Applier
	metrics *metrics.Metrics // nil without --metrics: its methods then do nothing
	logger  *slog.Logger
	// out is mail out, set before any server is built: the queue takes
	// the mail for other domains, and SRS reverses bounces to forwarded
	// mail.
	out *outbound

	mu    sync.Mutex
	ready bool
	md    *maildir.Store
	certs *tlscert.Manager
	authn *auth.Authenticator
	// verifier checks SPF, DKIM and DMARC of mail from outside; its
	// resolver's cache serves every instance of the SMTP server.
	verifier *mailauth.Verifier
	// inject is the SMTP server that delivers the box's own messages
	// (the queue's reports); it serves no listener.
	inject *smtpd.Server
}

func (m *mailDeps) get(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ready {
		return nil
	}
	st := m.app.Store()
	md, err := maildir.New(st.Dir(), m.logger.With("component", "maildir"))
	if err != nil {
		return err
	}
	// Before any server: deliveries a crash interrupted are finished or
	// undone, so no client sees half of one.
	if err := md.Recover(ctx); err != nil {
		return fmt.Errorf("recover interrupted deliveries: %w", err)
	}
	certs, err := tlscert.New(st.Dir(), m.app.Settings(), m.logger.With("component", "tls"))
	if err != nil {
		return err
	}
	m.md, m.certs, m.authn = md, certs, auth.NewAuthenticator(st, m.logger.With("component", "auth")).Observe(m.metrics)
	m.verifier = mailauth.NewVerifier(mailauth.NewResolver(nil, 0), 0, m.logger.With("component", "mailauth"))
	m.ready = true
	return nil
}

func (m *mailDeps) smtp(ctx context.Context, _ supervisor.Spec) (supervisor.Instance, error) {
	if err := m.get(ctx); err != nil {
		return nil, err
	}
	srv, err := smtpd.New(m.smtpConfig())
	if err != nil {
		return nil, err
	}
	return instance{"smtp": srv.ServeMX, "submission": srv.ServeSubmission, "submissions": srv.ServeSubmissions}, nil
}

// smtpConfig is the SMTP server's configuration; get must have run.
func (m *mailDeps) smtpConfig() smtpd.Config {
	st := m.app.Store()
	return smtpd.Config{
		Settings:  m.app.Settings(),
		TLS:       m.certs.Config(),
		Directory: st,
		Deliverer: m.md,
		Auth:      m.authn,
		Verifier:  m.verifier,
		Queue:     m.out.queue,
		SRS:       m.out.srs,
		TempDir:   st.Dir(),
		Logger:    m.logger.With("component", "smtp"),
		Metrics:   m.metrics,
	}
}

// injectServer is the server that delivers the queue's reports, made once.
func (m *mailDeps) injectServer(ctx context.Context) (*smtpd.Server, error) {
	if err := m.get(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inject == nil {
		srv, err := smtpd.New(m.smtpConfig())
		if err != nil {
			return nil, err
		}
		m.inject = srv
	}
	return m.inject, nil
}

func (m *mailDeps) pop3(ctx context.Context, _ supervisor.Spec) (supervisor.Instance, error) {
	if err := m.get(ctx); err != nil {
		return nil, err
	}
	srv, err := pop3d.New(pop3d.Config{Settings: m.app.Settings(), TLS: m.certs.Config(), Maildir: m.md, Mailboxes: m.app.Store(), Auth: m.authn, Logger: m.logger.With("component", "pop3"), Metrics: m.metrics})
	if err != nil {
		return nil, err
	}
	return instance{"pop3": srv.Serve, "pop3s": srv.ServeTLS}, nil
}

func (m *mailDeps) imap(ctx context.Context, _ supervisor.Spec) (supervisor.Instance, error) {
	if err := m.get(ctx); err != nil {
		return nil, err
	}
	srv, err := imapd.New(imapd.Config{Settings: m.app.Settings(), TLS: m.certs.Config(), Maildir: m.md, Mailboxes: m.app.Store(), Auth: m.authn, Logger: m.logger.With("component", "imap"), Metrics: m.metrics})
	if err != nil {
		return nil, err
	}
	return instance{"imap": srv.Serve, "imaps": srv.ServeTLS}, nil
}
