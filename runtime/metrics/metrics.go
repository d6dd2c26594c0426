// Package metrics defines the Prometheus metrics of mailfountaind and
// serves them over HTTP (mailfountaind --metrics ADDR, path /metrics).
//
// The daemon creates a registry, New registers the metrics on it, and the
// *Metrics is handed to what reports: the reconciler engine (Planned,
// Applied), the daemon (DriftCorrected, Held, Unheld, ConfirmPending,
// ConfirmRollback), the SMTP, IMAP and
// POP3 servers (Session, Refused, Reply, Delivery), the authenticator
// (Login), the outbound queue (Enqueued, Recipients, QueueSize), the
// outbound client (OutboundConnection, OutboundRecipient, MTASTSRefused),
// the DNS server (DNSQuery, DNSRateLimited, DNSZoneSwap, DNSTransfer,
// DNSNotify) and its forwarding resolver (ForwardCache, ForwardExchange,
// ForwardDiscarded), the PPPoE WAN link (PPPoESession, PPPoERestart,
// PPPoEUp), the front LED's loop (LEDPattern), commit-confirm
// (ConfirmPending, ConfirmRollback), the DHCP server (DHCPReply,
// DHCPLeases), the firewall reconciler (FirewallApplied,
// FirewallDriftCorrected), the network reconciler (NetlinkChanges,
// NetlinkDriftCorrected) and the WAN's DHCP client (DHCPClientLease,
// DHCPClientExchange).
// Those packages declare the small interfaces they call and do
// not import Prometheus; a nil *Metrics takes every call and records
// nothing, so that a daemon without --metrics pays nothing.
//
// Labels have few values: no address, user or domain is ever one.
//
// Reconcilers (label reconciler: accounts, mail...):
//
//	mailfountain_reconciler_plan_duration_seconds           histogram  observing and planning, per plan
//	mailfountain_reconciler_apply_duration_seconds          histogram  applying its changes, per apply
//	mailfountain_reconciler_changes_applied_total           counter    changes applied (applies and resyncs)
//	mailfountain_reconciler_failures_total{stage}           counter    failed plans (stage="plan") and applies (stage="apply")
//	mailfountain_reconciler_drift_corrected_total           counter    changes applied by a resync: the live state had drifted
//	mailfountain_reconciler_last_success_timestamp_seconds  gauge      Unix time it was last seen converged: a plan without changes, or an apply that succeeded
//
// Versions held by the daemon's guard against mass deletion (no label: a
// held version is a whole document):
//
//	mailfountain_version_held           gauge    1 while the daemon holds an edit instead of applying it, else 0
//	mailfountain_versions_held_total    counter  edits held
//
// Servers (label service: mx, submission, submissions, imap, imaps, pop3,
// pop3s, and dns for its TCP connections refused; SMTP's "mx" is the
// daemon's --smtp listener):
//
//	mailfountain_sessions_total{service}                    counter  connections admitted
//	mailfountain_connections_refused_total{service,limit}   counter  connections refused by a limit: limit="total" (the server's pool is full) or "per_address" (the client address has its share)
//	mailfountain_smtp_replies_total{service,class}          counter  SMTP replies by code class: class="2xx", "3xx", "4xx", "5xx"
//	mailfountain_smtp_deliveries_total{service,result}      counter  messages received whole: result="delivered" (stored, 250), "duplicate" (already stored before a restart, 250), "refused" (refused for their content or size, 5xx), "failed" (could not be stored, 451)
//
// The outbound queue (runtime/queue):
//
//	mailfountain_queue_enqueued_total            counter  messages that entered the queue
//	mailfountain_queue_recipients_total{result}  counter  recipients by result: delivered, deferred (a temporary failure, tried again later), bounced, relayed (the destination refused the box's address: retried through the smarthost), deleted (by the administrator)
//	mailfountain_queue_messages                  gauge    messages in the queue, held ones included
//
// Logins, as the authenticator checks them for every server (label
// protocol: smtp, imap, pop3):
//
//	mailfountain_logins_total{protocol,result}  counter  result="ok", "bad_password", "unknown_user", "locked" (too many failures: refused without a check), "error" (the store failed, or the client left)
//
// Outbound delivery (runtime/smtpout; label route: direct, relay):
//
//	mailfountain_smtpout_connections_total{state,tls}     counter  connections to remote servers: state="opened" or "reused" (an idle one sent another message), tls="yes" or "no"
//	mailfountain_smtpout_recipients_total{route,result}   counter  recipients of delivery attempts: result="delivered", "temporary", "permanent", "blocked" (a block answer: refused for the box's address)
//	mailfountain_smtpout_mtasts_refusals_total            counter  MX hosts not used because the destination's MTA-STS policy (mode enforce) refused them
//
// The LAN's forwarding resolver (runtime/dnsd/forward):
//
//	mailfountain_dns_forward_queries_total{cache}       counter    queries forwarded or answered from the cache: cache="hit", "miss" (an upstream exchange), "shared" (waited for the exchange of an identical query)
//	mailfountain_dns_forward_exchanges_total{result}    counter    exchanges with an upstream resolver: result="ok", "servfail", "refused", "timeout", "error"
//	mailfountain_dns_forward_exchange_duration_seconds  histogram  time of an exchange with an upstream resolver, whatever its result
//	mailfountain_dns_forward_discarded_total            counter    datagrams discarded for not answering the query sent (another ID or question): forgeries or late answers
//
// The DNS server (runtime/dnsd; label transport: udp, tcp):
//
//	mailfountain_dns_queries_total{transport,rcode}    counter    queries by the rcode answered (noerror, nxdomain, refused, servfail, formerr, notimp, badvers, other) or "dropped" (not a query, rate limited, not sent)
//	mailfountain_dns_rate_limited_total{action}        counter    responses over the rate limit (RRL): action="dropped" or "slipped" (sent truncated, TC=1)
//	mailfountain_dns_zone_swaps_total                  counter    published zone sets indexed and swapped in
//	mailfountain_dns_zone_swap_duration_seconds        histogram  time to index and swap in a zone set
//	mailfountain_dns_transfers_total{result}           counter    zone transfers (AXFR, IXFR): result="allowed" or "refused"
//	mailfountain_dns_notifies_total{result}            counter    NOTIFY to secondaries: result="acknowledged" or "failed" (after its retries)
//
// The PPPoE WAN link (runtime/pppoe):
//
//	mailfountain_pppoe_sessions_total  counter  PPP sessions that came up (pppd ran ip-up)
//	mailfountain_pppoe_restarts_total  counter  times pppd exited (or could not start) and was started again after its backoff
//	mailfountain_pppoe_up              gauge    1 while a PPP session is up, else 0
//
// The front LED (runtime/led; only on box hardware, real or virtual):
//
//	mailfountain_led_pattern{pattern}  gauge  1 for the pattern the LED shows, 0 for the others: pattern="setup" (not configured yet), "steady", "error" (a reconciler failed), "off"
//
// Commit-confirm (mfapply apply --confirm-within; runtime/daemon):
//
//	mailfountain_confirm_pending                  gauge    1 while an apply waits for its confirmation, else 0
//	mailfountain_confirm_rollbacks_total{result}  counter  rollbacks of applies not confirmed in time: result="done" or "failed" (tried again later)
//
// The DHCP server (runtime/dhcpd):
//
//	mailfountain_dhcp_replies_total{kind}  counter  requests by the reply sent: kind="offer", "ack", "nak"; or none: "released", "declined", "exhausted" (no address left to offer), "dropped" (malformed, not for this server, over a limit)
//	mailfountain_dhcp_leases_active        gauge    leases held by a device
//	mailfountain_dhcp_pool_free            gauge    addresses of the range no active lease holds (reservations apart)
//
// The firewall reconciler (reconcilers/firewall; label op: add, delete):
//
//	mailfountain_firewall_rules_applied_total{op}      counter    rules of the table inet mailfountain added or deleted (a table rebuilt whole adds every rule)
//	mailfountain_firewall_drift_corrected_total        counter    rules (or the table, or a chain) changed by hand and put right
//	mailfountain_firewall_apply_duration_seconds       histogram  time of a commit of the table's batch
//
// The network reconciler (reconcilers/network) and the WAN's DHCP client
// (runtime/dhcpclient):
//
//	mailfountain_network_netlink_changes_total             counter  changes made to the box's links, addresses, routes and forwarding
//	mailfountain_network_drift_corrected_total             counter  those of them that put back what the layout last applied had (a port set down, an address deleted by hand)
//	mailfountain_dhcp_client_lease                         gauge    1 while the WAN's DHCP client holds a lease, else 0
//	mailfountain_dhcp_client_exchanges_total{kind,result}  counter  exchanges with a DHCP server: kind="discover", "renew", "rebind"; result="ok", "nak", "failed"
//
// And the Go runtime's and the process's collectors: go_* (goroutines,
// memory, GC) and process_* (CPU, resident memory, open files).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/connlimit"
)

// Path is where Serve answers.
const Path = "/metrics"

// Limits of the HTTP server: a scrape is one small GET.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = time.Minute
	shutdownGrace     = 2 * time.Second
)

// dnsBuckets span 250 µs (a loopback or LAN resolver's cache) to about
// 4 s (a timeout), by factors of 2.
var dnsBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

// durationBuckets span 1 ms to about 65 s, by factors of 4: a plan of the
// example document takes milliseconds, one of a large box seconds.
var durationBuckets = prometheus.ExponentialBuckets(0.001, 4, 9)

// Metrics are mailfountaind's metrics. Its methods are safe for concurrent
// use; those that record (all but Handler and Serve) do nothing on a nil
// *Metrics.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger
	now func() time.Time

	planDuration, applyDuration *prometheus.HistogramVec
	changesApplied, failures    *prometheus.CounterVec
	driftCorrected              *prometheus.CounterVec
	lastSuccess                 *prometheus.GaugeVec
	versionHeld                 prometheus.Gauge
	versionsHeld                prometheus.Counter
	sessions, refused           *prometheus.CounterVec
	smtpReplies, smtpDeliveries *prometheus.CounterVec
	logins                      *prometheus.CounterVec
	queueEnqueued               prometheus.Counter
	queueRecipients             *prometheus.CounterVec
	queueMessages               prometheus.Gauge
	outConns, outRcpts          *prometheus.CounterVec
	mtastsRefusals              prometheus.Counter
	fwdQueries, fwdExchanges    *prometheus.CounterVec
	fwdDuration                 prometheus.Histogram
	fwdDiscarded                prometheus.Counter
	dnsQueries, dnsRateLimited  *prometheus.CounterVec
	dnsSwaps                    prometheus.Counter
	dnsSwapDuration             prometheus.Histogram
	dnsTransfers, dnsNotifies   *prometheus.CounterVec

	// The PPPoE WAN link's.
	pppoeSessions, pppoeRestarts prometheus.Counter
	pppoeUp                      prometheus.Gauge

	// The front LED's.
	ledPattern *prometheus.GaugeVec

	// Commit-confirm's.
	confirmPending   prometheus.Gauge
	confirmRollbacks *prometheus.CounterVec

	// The DHCP server's.
	dhcpReplies          *prometheus.CounterVec
	dhcpActive, dhcpFree prometheus.Gauge

	// The firewall reconciler's.
	fwRules         *prometheus.CounterVec
	fwDrift         prometheus.Counter
	fwApplyDuration prometheus.Histogram

	// The network reconciler's and the WAN's DHCP client's.
	netlinkChanges, netDrift prometheus.Counter
	dhcpClientLease          prometheus.Gauge
	dhcpClientExchanges      *prometheus.CounterVec
}

// New registers mailfountaind's metrics, and the Go runtime and process
// collectors, on reg.
func New(reg *prometheus.Registry, logger *slog.Logger) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("new metrics: no registry")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, []string{"reconciler"})
	}
	m := &Metrics{
		reg: reg,
		log: logger,
		now: time.Now,
		planDuration: histogram("mailfountain_reconciler_plan_duration_seconds",
			"Time a reconciler took to observe the live state and plan its changes."),
		applyDuration: histogram("mailfountain_reconciler_apply_duration_seconds",
			"Time a reconciler took to apply its changes."),
		changesApplied: counter("mailfountain_reconciler_changes_applied_total",
			"Changes a reconciler applied, by applies and resyncs.", "reconciler"),
		failures: counter("mailfountain_reconciler_failures_total",
			"Plans (stage=plan) and applies (stage=apply) of a reconciler that failed.", "reconciler", "stage"),
		driftCorrected: counter("mailfountain_reconciler_drift_corrected_total",
			"Changes a resync applied: the live state had drifted from the latest version.", "reconciler"),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfountain_reconciler_last_success_timestamp_seconds",
			Help: "Unix time a reconciler was last seen converged: a plan without changes, or an apply that succeeded.",
		}, []string{"reconciler"}),
		versionHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_version_held",
			Help: "1 while the daemon holds an edit of the state files instead of applying it (a mass deletion), else 0.",
		}),
		versionsHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_versions_held_total",
			Help: "Edits of the state files the daemon held instead of applying them.",
		}),
		sessions: counter("mailfountain_sessions_total",
			"Connections a server admitted.", "service"),
		refused: counter("mailfountain_connections_refused_total",
			"Connections a server refused by a limit: total (its pool is full) or per_address.", "service", "limit"),
		smtpReplies: counter("mailfountain_smtp_replies_total",
			"SMTP replies by code class (2xx, 3xx, 4xx, 5xx).", "service", "class"),
		smtpDeliveries: counter("mailfountain_smtp_deliveries_total",
			"Messages an SMTP server received whole, by result: delivered, duplicate, refused, failed.", "service", "result"),
		logins: counter("mailfountain_logins_total",
			"Logins checked, by protocol and result: ok, bad_password, unknown_user, locked, error.", "protocol", "result"),
		queueEnqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_queue_enqueued_total",
			Help: "Messages that entered the outbound queue.",
		}),
		queueRecipients: counter("mailfountain_queue_recipients_total",
			"Recipients of the outbound queue by result: delivered, deferred, bounced, relayed, deleted.", "result"),
		queueMessages: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_queue_messages",
			Help: "Messages in the outbound queue, held ones included.",
		}),
		outConns: counter("mailfountain_smtpout_connections_total",
			"Connections to remote SMTP servers: opened or reused, with TLS or not.", "state", "tls"),
		outRcpts: counter("mailfountain_smtpout_recipients_total",
			"Recipients of outbound delivery attempts, by route (direct, relay) and result: delivered, temporary, permanent, blocked.", "route", "result"),
		mtastsRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_smtpout_mtasts_refusals_total",
			Help: "MX hosts not used because the destination's MTA-STS policy in mode enforce refused them.",
		}),
		fwdQueries: counter("mailfountain_dns_forward_queries_total",
			"Queries of the LAN's forwarding resolver, by cache result: hit, miss (an upstream exchange), shared (the exchange of an identical query).", "cache"),
		fwdExchanges: counter("mailfountain_dns_forward_exchanges_total",
			"Exchanges of the forwarding resolver with an upstream resolver, by result: ok, servfail, refused, timeout, error.", "result"),
		fwdDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailfountain_dns_forward_exchange_duration_seconds",
			Help:    "Time of an exchange of the forwarding resolver with an upstream resolver, whatever its result.",
			Buckets: dnsBuckets,
		}),
		fwdDiscarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_dns_forward_discarded_total",
			Help: "Datagrams the forwarding resolver discarded for not answering the query it sent (another ID or question).",
		}),
		dnsQueries: counter("mailfountain_dns_queries_total",
			"DNS queries by transport (udp, tcp) and the rcode answered, or dropped.", "transport", "rcode"),
		dnsRateLimited: counter("mailfountain_dns_rate_limited_total",
			"DNS responses over the rate limit: dropped, or slipped (sent truncated).", "action"),
		dnsSwaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_dns_zone_swaps_total",
			Help: "Zone sets the DNS server indexed and swapped in.",
		}),
		dnsSwapDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailfountain_dns_zone_swap_duration_seconds",
			Help:    "Time the DNS server took to index and swap in a zone set.",
			Buckets: durationBuckets,
		}),
		dnsTransfers: counter("mailfountain_dns_transfers_total",
			"Zone transfers, allowed (to a secondary) or refused.", "result"),
		dnsNotifies: counter("mailfountain_dns_notifies_total",
			"NOTIFY messages to secondaries: acknowledged, or failed after the retries.", "result"),
		pppoeSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_pppoe_sessions_total",
			Help: "PPP sessions of the PPPoE WAN link that came up.",
		}),
		pppoeRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_pppoe_restarts_total",
			Help: "Times pppd exited (or could not start) and was started again after its backoff.",
		}),
		pppoeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_pppoe_up",
			Help: "1 while a PPP session of the PPPoE WAN link is up, else 0.",
		}),
		ledPattern: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfountain_led_pattern",
			Help: "1 for the pattern the front LED shows (setup, steady, error, off), 0 for the others.",
		}, []string{"pattern"}),
		confirmPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_confirm_pending",
			Help: "1 while an apply waits for its confirmation (mfapply apply --confirm-within), else 0.",
		}),
		confirmRollbacks: counter("mailfountain_confirm_rollbacks_total",
			"Rollbacks of applies not confirmed in time, by result: done, or failed (tried again later).", "result"),
		dhcpReplies: counter("mailfountain_dhcp_replies_total",
			"DHCP requests by what the server answered: offer, ack, nak; or none: released, declined, exhausted (no address left), dropped.", "kind"),
		dhcpActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_dhcp_leases_active",
			Help: "Leases the DHCP server holds for a device.",
		}),
		dhcpFree: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_dhcp_pool_free",
			Help: "Addresses of the DHCP range that no active lease holds (reservations apart).",
		}),
		fwRules: counter("mailfountain_firewall_rules_applied_total",
			"Rules of the firewall's table added or deleted (op=add, delete).", "op"),
		fwDrift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_firewall_drift_corrected_total",
			Help: "Firewall rules, or its table or a chain, changed by hand and put right.",
		}),
		fwApplyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailfountain_firewall_apply_duration_seconds",
			Help:    "Time of a commit of the firewall table's batch.",
			Buckets: dnsBuckets,
		}),
		netlinkChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_network_netlink_changes_total",
			Help: "Changes the network reconciler made to the box's links, addresses, routes and forwarding.",
		}),
		netDrift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailfountain_network_drift_corrected_total",
			Help: "Netlink changes that put back what the layout last applied had: the box's links had drifted.",
		}),
		dhcpClientLease: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfountain_dhcp_client_lease",
			Help: "1 while the WAN's DHCP client holds a lease, else 0.",
		}),
		dhcpClientExchanges: counter("mailfountain_dhcp_client_exchanges_total",
			"Exchanges of the WAN's DHCP client with a server, by kind (discover, renew, rebind) and result (ok, nak, failed).", "kind", "result"),
	}
	cs := []prometheus.Collector{
		m.planDuration, m.applyDuration, m.changesApplied, m.failures, m.driftCorrected, m.lastSuccess,
		m.versionHeld, m.versionsHeld,
		m.sessions, m.refused, m.smtpReplies, m.smtpDeliveries, m.logins,
		m.queueEnqueued, m.queueRecipients, m.queueMessages,
		m.outConns, m.outRcpts, m.mtastsRefusals,
		m.fwdQueries, m.fwdExchanges, m.fwdDuration, m.fwdDiscarded,
		m.dnsQueries, m.dnsRateLimited, m.dnsSwaps, m.dnsSwapDuration, m.dnsTransfers, m.dnsNotifies,
		m.pppoeSessions, m.pppoeRestarts, m.pppoeUp,
		m.ledPattern,
		m.confirmPending, m.confirmRollbacks,
		m.dhcpReplies, m.dhcpActive, m.dhcpFree,
		m.fwRules, m.fwDrift, m.fwApplyDuration,
		m.netlinkChanges, m.netDrift, m.dhcpClientLease, m.dhcpClientExchanges,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("new metrics: %w", err)
		}
	}
	return m, nil
}

// Planned records a reconciler's plan; it implements the engine's
// reconcilers.Observer.
func (m *Metrics) Planned(reconciler string, took time.Duration, changes int, err error) {
	if m == nil {
		return
	}
	m.planDuration.WithLabelValues(reconciler).Observe(took.Seconds())
	switch {
	case err != nil:
		m.failures.WithLabelValues(reconciler, "plan").Inc()
	case changes == 0:
		m.succeeded(reconciler)
	}
}

// Applied records a reconciler's apply; it implements the engine's
// reconcilers.Observer.
func (m *Metrics) Applied(reconciler string, took time.Duration, changes int, err error) {
	if m == nil {
		return
	}
	m.applyDuration.WithLabelValues(reconciler).Observe(took.Seconds())
	if err != nil {
		m.failures.WithLabelValues(reconciler, "apply").Inc()
		return
	}
	m.changesApplied.WithLabelValues(reconciler).Add(float64(changes))
	m.succeeded(reconciler)
}

func (m *Metrics) succeeded(reconciler string) {
	m.lastSuccess.WithLabelValues(reconciler).Set(float64(m.now().UnixNano()) / 1e9)
}

// DriftCorrected records the changes a resync applied for a reconciler.
func (m *Metrics) DriftCorrected(reconciler string, changes int) {
	if m == nil || changes <= 0 {
		return
	}
	m.driftCorrected.WithLabelValues(reconciler).Add(float64(changes))
}

// Held records that the daemon holds an edit instead of applying it; a
// new held edit replaces the one held before.
func (m *Metrics) Held() {
	if m == nil {
		return
	}
	m.versionsHeld.Inc()
	m.versionHeld.Set(1)
}

// Unheld records that the daemon holds no edit any more (it was applied,
// or replaced by an edit that is not held).
func (m *Metrics) Unheld() {
	if m == nil {
		return
	}
	m.versionHeld.Set(0)
}

// Session records a connection a server admitted.
func (m *Metrics) Session(service string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(service).Inc()
}

// Refused records a connection a server refused; reason is connlimit's
// (TooMany, TooManyFromIP).
func (m *Metrics) Refused(service, reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(service, limitName(reason)).Inc()
}

// limitName is the limit label of a connlimit refusal.
func limitName(reason string) string {
	switch reason {
	case connlimit.TooMany:
		return "total"
	case connlimit.TooManyFromIP:
		return "per_address"
	}
	return "other"
}

// Reply records an SMTP reply of code.
func (m *Metrics) Reply(service string, code int) {
	if m == nil {
		return
	}
	class := "other"
	if code >= 200 && code < 600 {
		class = replyClasses[code/100-2]
	}
	m.smtpReplies.WithLabelValues(service, class).Inc()
}

// replyClasses are the class labels of codes 2xx to 5xx, made once: Reply
// is called for every reply and builds no string.
var replyClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

// Delivery records what became of a message an SMTP server received
// whole (result: delivered, duplicate, refused, failed).
func (m *Metrics) Delivery(service, result string) {
	if m == nil {
		return
	}
	m.smtpDeliveries.WithLabelValues(service, result).Inc()
}

// Login records the result of a login checked for protocol.
func (m *Metrics) Login(protocol, result string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(protocol, result).Inc()
}

// Enqueued records a message that entered the outbound queue.
func (m *Metrics) Enqueued() {
	if m == nil {
		return
	}
	m.queueEnqueued.Inc()
}

// Recipients records n recipients of the outbound queue with result
// (queue.ResultDelivered...).
func (m *Metrics) Recipients(result string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.queueRecipients.WithLabelValues(result).Add(float64(n))
}

// QueueSize records the number of messages in the outbound queue.
func (m *Metrics) QueueSize(messages int) {
	if m == nil {
		return
	}
	m.queueMessages.Set(float64(messages))
}

// OutboundConnection records a connection to a remote SMTP server, opened
// or reused, with TLS or not.
func (m *Metrics) OutboundConnection(reused, tls bool) {
	if m == nil {
		return
	}
	state, enc := "opened", "no"
	if reused {
		state = "reused"
	}
	if tls {
		enc = "yes"
	}
	m.outConns.WithLabelValues(state, enc).Inc()
}

// OutboundRecipient records what became of one recipient of an outbound
// delivery attempt.
func (m *Metrics) OutboundRecipient(route, result string) {
	if m == nil {
		return
	}
	m.outRcpts.WithLabelValues(route, result).Inc()
}

// MTASTSRefused records an MX host an MTA-STS policy refused.
func (m *Metrics) MTASTSRefused() {
	if m == nil {
		return
	}
	m.mtastsRefusals.Inc()
}

// ForwardCache records a query of the forwarding resolver: answered from
// the cache (hit), by an upstream exchange (miss), or by the exchange of
// an identical query (shared).
func (m *Metrics) ForwardCache(result string) {
	if m == nil {
		return
	}
	m.fwdQueries.WithLabelValues(result).Inc()
}

// ForwardExchange records an exchange of the forwarding resolver with an
// upstream resolver.
func (m *Metrics) ForwardExchange(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.fwdExchanges.WithLabelValues(result).Inc()
	m.fwdDuration.Observe(took.Seconds())
}

// ForwardDiscarded records a datagram the forwarding resolver discarded.
func (m *Metrics) ForwardDiscarded() {
	if m == nil {
		return
	}
	m.fwdDiscarded.Inc()
}

// DNSQuery records a DNS query answered over transport with rcode, or
// dropped (rcode "dropped").
func (m *Metrics) DNSQuery(transport, rcode string) {
	if m == nil {
		return
	}
	m.dnsQueries.WithLabelValues(transport, rcode).Inc()
}

// DNSRateLimited records a DNS response over the rate limit, dropped or
// slipped.
func (m *Metrics) DNSRateLimited(action string) {
	if m == nil {
		return
	}
	m.dnsRateLimited.WithLabelValues(action).Inc()
}

// DNSZoneSwap records a zone set the DNS server swapped in.
func (m *Metrics) DNSZoneSwap(took time.Duration) {
	if m == nil {
		return
	}
	m.dnsSwaps.Inc()
	m.dnsSwapDuration.Observe(took.Seconds())
}

// DNSTransfer records a zone transfer, allowed or refused.
func (m *Metrics) DNSTransfer(result string) {
	if m == nil {
		return
	}
	m.dnsTransfers.WithLabelValues(result).Inc()
}

// DNSNotify records a NOTIFY to a secondary, acknowledged or failed.
func (m *Metrics) DNSNotify(result string) {
	if m == nil {
		return
	}
	m.dnsNotifies.WithLabelValues(result).Inc()
}

// PPPoESession records a PPP session that came up.
func (m *Metrics) PPPoESession() {
	if m == nil {
		return
	}
	m.pppoeSessions.Inc()
}

// PPPoERestart records that pppd exited (or could not start) and is
// started again.
func (m *Metrics) PPPoERestart() {
	if m == nil {
		return
	}
	m.pppoeRestarts.Inc()
}

// PPPoEUp records whether a PPP session is up.
func (m *Metrics) PPPoEUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.pppoeUp.Set(v)
}

// ledPatterns are the front LED's patterns, each a series of
// mailfountain_led_pattern from the first one shown, so that an alert on
// "error" sees 0 rather than nothing.
var ledPatterns = [...]hw.Pattern{hw.PatternSetup, hw.PatternSteady, hw.PatternError, hw.PatternOff}

// LEDPattern records the pattern the front LED shows.
func (m *Metrics) LEDPattern(pattern string) {
	if m == nil {
		return
	}
	for _, p := range ledPatterns {
		v := 0.0
		if string(p) == pattern {
			v = 1
		}
		m.ledPattern.WithLabelValues(string(p)).Set(v)
	}
}

// ConfirmPending records whether an apply waits for its confirmation.
func (m *Metrics) ConfirmPending(pending bool) {
	if m == nil {
		return
	}
	v := 0.0
	if pending {
		v = 1
	}
	m.confirmPending.Set(v)
}

// ConfirmRollback records a rollback of an apply not confirmed in time,
// done or failed.
func (m *Metrics) ConfirmRollback(ok bool) {
	if m == nil {
		return
	}
	result := "done"
	if !ok {
		result = "failed"
	}
	m.confirmRollbacks.WithLabelValues(result).Inc()
}

// DHCPReply records a reply of the DHCP server (offer, ack, nak) or a
// request it answered with none (released, declined, exhausted,
// dropped).
func (m *Metrics) DHCPReply(kind string) {
	if m == nil {
		return
	}
	m.dhcpReplies.WithLabelValues(kind).Inc()
}

// DHCPLeases records the DHCP server's leases active and addresses free.
func (m *Metrics) DHCPLeases(active, free int) {
	if m == nil {
		return
	}
	m.dhcpActive.Set(float64(active))
	m.dhcpFree.Set(float64(free))
}

// FirewallApplied records a commit of the firewall's table: the rules it
// added and deleted, and how long it took.
func (m *Metrics) FirewallApplied(added, deleted int, took time.Duration) {
	if m == nil {
		return
	}
	if added > 0 {
		m.fwRules.WithLabelValues("add").Add(float64(added))
	}
	if deleted > 0 {
		m.fwRules.WithLabelValues("delete").Add(float64(deleted))
	}
	m.fwApplyDuration.Observe(took.Seconds())
}

// FirewallDriftCorrected records n changes made by hand to the firewall's
// table and put right.
func (m *Metrics) FirewallDriftCorrected(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.fwDrift.Add(float64(n))
}

// NetlinkChanges records changes the network reconciler made.
func (m *Metrics) NetlinkChanges(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.netlinkChanges.Add(float64(n))
}

// NetlinkDriftCorrected records netlink changes that corrected drift.
func (m *Metrics) NetlinkDriftCorrected(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.netDrift.Add(float64(n))
}

// DHCPClientLease records whether the WAN's DHCP client holds a lease.
func (m *Metrics) DHCPClientLease(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.dhcpClientLease.Set(v)
}

// DHCPClientExchange records an exchange of the WAN's DHCP client.
func (m *Metrics) DHCPClientExchange(kind, result string) {
	if m == nil {
		return
	}
	m.dhcpClientExchanges.WithLabelValues(kind, result).Inc()
}

// Handler answers with the metrics of the registry, in the format the
// scraper asks for (the text format by default).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}

// Serve answers GET /metrics on ln until ctx is done, then stops: it is
// a daemon component.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, m.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	err := srv.Serve(ln)
	if stop() {
		// Serve failed on its own: ctx is not done.
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	<-stopped
	return nil
}
