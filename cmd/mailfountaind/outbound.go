package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/dkimsign"
	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/mailauth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/mtasts"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/smtpd"
	"mailfountain.dev/mailfountain/runtime/smtpout"
	"mailfountain.dev/mailfountain/runtime/srs"
	"mailfountain.dev/mailfountain/runtime/store"
)

// outbound is mail out: the queue, the client that sends what it holds,
// and the SRS rewriter shared by the queue (forwarding) and the MX
// (bounces coming back).
type outbound struct {
	queue  *queue.Queue
	client *smtpout.Client
	sts    *mtasts.Cache
	srs    *srsRewriter
	log    *slog.Logger
}

// openOutbound opens the queue, recovering what a crash left, and builds
// its sender. Run of the queue is hosted by the daemon; Close after it
// returned. inject delivers the queue's reports (bounces).
func openOutbound(ctx context.Context, o *options, app *applier.Applier, inject queue.Notifier, m *metrics.Metrics, logger *slog.Logger) (*outbound, error) {
	st := app.Store()
	live := app.Settings()
	var servers []string
	if o.resolver != "" {
		servers = []string{o.resolver}
	}
	res := mailauth.NewResolver(servers, 0)
	sts, err := mtasts.New(mtasts.Config{
		Resolver: res, DialContext: resolvedDialer(res),
		File: filepath.Join(st.Dir(), "mta-sts.json"), Logger: logger.With("component", "mta-sts"),
	})
	if err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	secrets, err := srs.LoadOrCreateSecrets(st.Dir())
	if err != nil {
		sts.Close()
		return nil, fmt.Errorf("srs secrets: %w", err)
	}
	out := &outbound{sts: sts, srs: &srsRewriter{secrets: secrets, live: live, dir: st}, log: logger}
	hostname := func() string { return live.Load().Hostname }
	out.client, err = smtpout.New(smtpout.Config{
		Resolver: res,
		Port:     o.remotePort,
		Hostname: hostname,
		Relay:    func() *smtpout.Relay { return relayOf(live.Load()) },
		MTASTS:   sts,
		Logger:   logger.With("component", "smtp-out"),
		Metrics:  m,
	})
	if err != nil {
		sts.Close()
		return nil, err
	}
	out.queue, err = queue.Open(ctx, queue.Config{
		Dir:    queue.Dir(st.Dir()),
		Sender: out.client,
		Settings: func() queue.Settings {
			s := live.Load()
			return queue.Settings{MinBackoff: s.MinBackoff, MaxBackoff: s.MaxBackoff, Lifetime: s.Lifetime, DelayWarning: s.DelayWarning, Relay: s.Relay != nil}
		},
		Signer:   dkimsign.NewSigner(dkimsign.Dir(st.Dir())),
		SRS:      out.srs.Forward,
		Notifier: inject,
		Reports:  func(ctx context.Context, sender string) (string, string) { return reportDomain(ctx, st, live, sender) },
		Hostname: hostname,
		Logger:   logger.With("component", "queue"),
		Metrics:  m,
	})
	if err != nil {
		out.client.Close()
		sts.Close()
		return nil, err
	}
	return out, nil
}

// resolvedDialer dials a host name's addresses as res gives them (A,
// then AAAA), so that the MTA-STS policy host is found by the same DNS
// server as the MX hosts (--resolver).
func resolvedDialer(res *mailauth.Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := res.LookupAddrs(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("look up %s: %w", host, err)
		}
		var firstErr error
		for _, a := range addrs {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		return nil, firstErr
	}
}

// Close closes the queue (after its Run returned), the idle connections
// and the MTA-STS cache.
func (o *outbound) Close() {
	if err := o.queue.Close(); err != nil {
		o.log.Warn("close the queue", "err", err)
	}
	o.client.Close()
	o.sts.Close()
}

// relayOf is the smarthost of s for smtpout: everything goes through it
// in relay mode; in direct mode it takes only the messages a destination
// refused for the box's address (manual 5.4). The password is read when a connection logs in, not at every Send: a
// file that went away since the plan checked it is a temporary failure,
// and the queue retries.
func relayOf(s mailconf.Settings) *smtpout.Relay {
	if s.Relay == nil {
		return nil
	}
	return &smtpout.Relay{
		Host: s.Relay.Host, Port: s.Relay.Port,
		Username: s.Relay.Username, Password: s.Relay.ReadPassword,
		FallbackOnly: s.Mode != mailconf.ModeRelay,
	}
}

// reportDomain is the domain a report to sender comes from, and its
// language: the sender's own domain when it is one of the box's, else
// the box's first domain (a bounce of forwarded mail).
func reportDomain(ctx context.Context, dir *store.Store, live *mailconf.Live, sender string) (domain, language string) {
	if i := strings.LastIndexByte(sender, '@'); i >= 0 {
		if d, err := dir.Domain(ctx, strings.ToLower(sender[i+1:])); err == nil {
			return d.Name, d.Language
		}
	}
	first := live.Load().Domain
	if first == "" {
		return "", ""
	}
	if d, err := dir.Domain(ctx, first); err == nil {
		return d.Name, d.Language
	}
	return first, ""
}

// srsRewriter rewrites senders for the box's first domain, the one SRS
// addresses are written at; it follows the document as it changes.
type srsRewriter struct {
	secrets [][]byte
	live    *mailconf.Live
	dir     *store.Store
}

func (r *srsRewriter) rewriter() (*srs.Rewriter, error) {
	d := r.live.Load().Domain
	if d == "" {
		return nil, errors.New("srs: the box has no domain")
	}
	return srs.New(srs.Config{Secrets: r.secrets, Domain: d})
}

// Forward is the sender forwarded mail is sent with: from itself when it
// is of a domain of the box (SPF passes as it is), else its SRS form.
func (r *srsRewriter) Forward(from string) (string, error) {
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		if _, err := r.dir.Domain(context.Background(), strings.ToLower(from[i+1:])); err == nil {
			return from, nil
		}
	}
	w, err := r.rewriter()
	if err != nil {
		return "", err
	}
	return w.Forward(from)
}

// Reverse is the original sender of an SRS address (smtpd.SRS).
func (r *srsRewriter) Reverse(addr string) (string, error) {
	w, err := r.rewriter()
	if err != nil {
		return "", err
	}
	return w.Reverse(addr)
}

// injector hands the queue's reports to the SMTP server's Inject: the
// sender's mailbox, or the queue again for an outside sender.
type injector struct {
	server func(ctx context.Context) (*smtpd.Server, error)
	log    *slog.Logger
}

func (in *injector) Notify(ctx context.Context, key string, m *dsn.Message) error {
	srv, err := in.server(ctx)
	if err != nil {
		return fmt.Errorf("deliver a report to %s: %w", m.EnvelopeTo, err)
	}
	err = srv.Inject(ctx, m.EnvelopeFrom, []string{m.EnvelopeTo}, key, bytes.NewReader(m.Data))
	if errors.Is(err, smtpd.ErrNoRoute) {
		// The sender's account is gone: trying again cannot help.
		in.log.Warn("report dropped: its recipient does not exist", "to", m.EnvelopeTo, "key", key)
		return nil
	}
	return err
}
