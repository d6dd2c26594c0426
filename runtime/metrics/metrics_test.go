package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers/network"
	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/dhcpclient"
	"mailfountain.dev/mailfountain/runtime/dhcpd"
	"mailfountain.dev/mailfountain/runtime/dnsd"
	"mailfountain.dev/mailfountain/runtime/dnsd/forward"
	"mailfountain.dev/mailfountain/runtime/imapd"
	"mailfountain.dev/mailfountain/runtime/led"
	"mailfountain.dev/mailfountain/runtime/metrics"
	"mailfountain.dev/mailfountain/runtime/pop3d"
	"mailfountain.dev/mailfountain/runtime/pppoe"
	"mailfountain.dev/mailfountain/runtime/queue"
	"mailfountain.dev/mailfountain/runtime/smtpd"
	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// observer is the reconciler engine's reconcilers.Observer, as the engine
// declares it.
type observer interface {
	Planned(reconciler string, took time.Duration, changes int, err error)
	Applied(reconciler string, took time.Duration, changes int, err error)
}

// The hooks *Metrics implements, those of the packages that call them.
var (
	_ observer           = (*metrics.Metrics)(nil)
	_ smtpd.Metrics      = (*metrics.Metrics)(nil)
	_ imapd.Metrics      = (*metrics.Metrics)(nil)
	_ pop3d.Metrics      = (*metrics.Metrics)(nil)
	_ auth.Observer      = (*metrics.Metrics)(nil)
	_ daemon.Metrics     = (*metrics.Metrics)(nil)
	_ queue.Metrics      = (*metrics.Metrics)(nil)
	_ smtpout.Metrics    = (*metrics.Metrics)(nil)
	_ forward.Metrics    = (*metrics.Metrics)(nil)
	_ dnsd.Metrics       = (*metrics.Metrics)(nil)
	_ pppoe.Metrics      = (*metrics.Metrics)(nil)
	_ led.Metrics        = (*metrics.Metrics)(nil)
	_ dhcpd.Metrics      = (*metrics.Metrics)(nil)
	_ network.Metrics    = (*metrics.Metrics)(nil)
	_ dhcpclient.Metrics = (*metrics.Metrics)(nil)
)

// scrape GETs url and returns every sample by series: the metric's name
// and its labels, sorted, as Prometheus writes them
// (`name{a="x",b="y"}`); a histogram gives name_count and name_sum.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	out, err := metrics.Samples(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return out
}

// serve serves m on a loopback port until the test ends and returns the
// URL of its metrics.
func serve(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context was done")
		}
	})
	return "http://" + ln.Addr().String() + metrics.Path
}

func newMetrics(t *testing.T) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestScrape: what the hooks hear is served at /metrics, under the names
// and labels the package documents.
func TestScrape(t *testing.T) {
	m := newMetrics(t)
	url := serve(t, m)

	before := time.Now()
	m.Planned("accounts", 30*time.Millisecond, 2, nil)
	m.Applied("accounts", 50*time.Millisecond, 2, nil)
	m.Planned("mail", 10*time.Millisecond, 0, nil) // in sync: a success
	m.Planned("mail", 10*time.Millisecond, 1, nil)
	m.Applied("mail", 20*time.Millisecond, 1, errors.New("disk full"))
	m.Planned("dns", time.Millisecond, 0, errors.New("cannot observe"))
	m.DriftCorrected("accounts", 3)
	m.DriftCorrected("mail", 0) // nothing corrected: no series
	m.Held()
	m.Held()
	m.Unheld()
	m.Session("mx")
	m.Session("mx")
	m.Session("imaps")
	m.Refused("mx", connlimit.TooMany)
	m.Refused("pop3", connlimit.TooManyFromIP)
	m.Reply("mx", 220)
	m.Reply("mx", 250)
	m.Reply("mx", 354)
	m.Reply("submission", 535)
	m.Reply("mx", 421)
	m.Delivery("mx", smtpd.DeliveryDelivered)
	m.Delivery("submission", smtpd.DeliveryRefused)
	m.Login("smtp", auth.LoginBadPassword)
	m.Login("imap", auth.LoginOK)
	m.Login("imap", auth.LoginOK)
	m.Enqueued()
	m.Enqueued()
	m.Recipients(queue.ResultDelivered, 3)
	m.Recipients(queue.ResultBounced, 1)
	m.Recipients(queue.ResultDeferred, 0) // nothing: no series
	m.QueueSize(7)
	m.OutboundConnection(false, true)
	m.OutboundConnection(true, true)
	m.OutboundConnection(true, true)
	m.OutboundConnection(false, false)
	m.OutboundRecipient("direct", "delivered")
	m.OutboundRecipient("direct", "blocked")
	m.OutboundRecipient("relay", "delivered")
	m.MTASTSRefused()
	m.ForwardCache(forward.CacheHit)
	m.ForwardCache(forward.CacheHit)
	m.ForwardCache(forward.CacheMiss)
	m.ForwardExchange(forward.ExchangeOK, 20*time.Millisecond)
	m.ForwardExchange(forward.ExchangeTimeout, 1500*time.Millisecond)
	m.ForwardDiscarded()
	m.DNSQuery(dnsd.UDP, "noerror")
	m.DNSQuery(dnsd.UDP, "noerror")
	m.DNSQuery(dnsd.TCP, "refused")
	m.DNSRateLimited(dnsd.Slipped)
	m.DNSZoneSwap(20 * time.Millisecond)
	m.DNSTransfer(dnsd.Refused)
	m.DNSNotify(dnsd.Acknowledged)
	m.PPPoEUp(true)
	m.PPPoESession()
	m.PPPoEUp(false)
	m.PPPoERestart()
	m.PPPoEUp(true)
	m.PPPoESession()
	m.LEDPattern(string(hw.PatternSetup))
	m.LEDPattern(string(hw.PatternError))
	m.ConfirmPending(true)
	m.ConfirmRollback(false)
	m.ConfirmRollback(true)
	m.ConfirmPending(false)
	m.ConfirmPending(true)
	m.DHCPReply(dhcpd.Offer)
	m.DHCPReply(dhcpd.Ack)
	m.DHCPReply(dhcpd.Ack)
	m.DHCPReply(dhcpd.Dropped)
	m.DHCPLeases(3, 148)
	m.FirewallApplied(27, 0, 3*time.Millisecond)
	m.FirewallApplied(2, 1, time.Millisecond)
	m.FirewallDriftCorrected(2)
	m.FirewallDriftCorrected(0) // nothing
	m.NetlinkChanges(5)
	m.NetlinkChanges(0) // nothing changed: nothing added
	m.NetlinkDriftCorrected(2)
	m.DHCPClientLease(false)
	m.DHCPClientLease(true)
	m.DHCPClientExchange("discover", "ok")
	m.DHCPClientExchange("renew", "nak")
	after := time.Now()

	got := scrape(t, url)
	want := map[string]float64{
		`mailfountain_reconciler_plan_duration_seconds_count{reconciler="accounts"}`:  1,
		`mailfountain_reconciler_plan_duration_seconds_sum{reconciler="accounts"}`:    0.03,
		`mailfountain_reconciler_plan_duration_seconds_count{reconciler="mail"}`:      2,
		`mailfountain_reconciler_plan_duration_seconds_sum{reconciler="mail"}`:        0.02,
		`mailfountain_reconciler_plan_duration_seconds_count{reconciler="dns"}`:       1,
		`mailfountain_reconciler_plan_duration_seconds_sum{reconciler="dns"}`:         0.001,
		`mailfountain_reconciler_apply_duration_seconds_count{reconciler="accounts"}`: 1,
		`mailfountain_reconciler_apply_duration_seconds_sum{reconciler="accounts"}`:   0.05,
		`mailfountain_reconciler_apply_duration_seconds_count{reconciler="mail"}`:     1,
		`mailfountain_reconciler_apply_duration_seconds_sum{reconciler="mail"}`:       0.02,
		`mailfountain_reconciler_changes_applied_total{reconciler="accounts"}`:        2,
		`mailfountain_reconciler_failures_total{reconciler="mail",stage="apply"}`:     1,
		`mailfountain_reconciler_failures_total{reconciler="dns",stage="plan"}`:       1,
		`mailfountain_reconciler_drift_corrected_total{reconciler="accounts"}`:        3,
		`mailfountain_version_held`:                                                  0,
		`mailfountain_versions_held_total`:                                           2,
		`mailfountain_sessions_total{service="mx"}`:                                  2,
		`mailfountain_sessions_total{service="imaps"}`:                               1,
		`mailfountain_connections_refused_total{limit="total",service="mx"}`:         1,
		`mailfountain_connections_refused_total{limit="per_address",service="pop3"}`: 1,
		`mailfountain_smtp_replies_total{class="2xx",service="mx"}`:                  2,
		`mailfountain_smtp_replies_total{class="3xx",service="mx"}`:                  1,
		`mailfountain_smtp_replies_total{class="4xx",service="mx"}`:                  1,
		`mailfountain_smtp_replies_total{class="5xx",service="submission"}`:          1,
		`mailfountain_smtp_deliveries_total{result="delivered",service="mx"}`:        1,
		`mailfountain_smtp_deliveries_total{result="refused",service="submission"}`:  1,
		`mailfountain_logins_total{protocol="smtp",result="bad_password"}`:           1,
		`mailfountain_logins_total{protocol="imap",result="ok"}`:                     2,
		`mailfountain_queue_enqueued_total`:                                          2,
		`mailfountain_queue_recipients_total{result="delivered"}`:                    3,
		`mailfountain_queue_recipients_total{result="bounced"}`:                      1,
		`mailfountain_queue_messages`:                                                7,
		`mailfountain_smtpout_connections_total{state="opened",tls="yes"}`:           1,
		`mailfountain_smtpout_connections_total{state="reused",tls="yes"}`:           2,
		`mailfountain_smtpout_connections_total{state="opened",tls="no"}`:            1,
		`mailfountain_smtpout_recipients_total{result="delivered",route="direct"}`:   1,
		`mailfountain_smtpout_recipients_total{result="blocked",route="direct"}`:     1,
		`mailfountain_smtpout_recipients_total{result="delivered",route="relay"}`:    1,
		`mailfountain_smtpout_mtasts_refusals_total`:                                 1,
		`mailfountain_dns_forward_queries_total{cache="hit"}`:                        2,
		`mailfountain_dns_forward_queries_total{cache="miss"}`:                       1,
		`mailfountain_dns_forward_exchanges_total{result="ok"}`:                      1,
		`mailfountain_dns_forward_exchanges_total{result="timeout"}`:                 1,
		`mailfountain_dns_forward_exchange_duration_seconds_count`:                   2,
		`mailfountain_dns_forward_exchange_duration_seconds_sum`:                     1.52,
		`mailfountain_dns_forward_discarded_total`:                                   1,
		`mailfountain_dns_queries_total{rcode="noerror",transport="udp"}`:            2,
		`mailfountain_dns_queries_total{rcode="refused",transport="tcp"}`:            1,
		`mailfountain_dns_rate_limited_total{action="slipped"}`:                      1,
		`mailfountain_dns_zone_swaps_total`:                                          1,
		`mailfountain_dns_zone_swap_duration_seconds_count`:                          1,
		`mailfountain_dns_zone_swap_duration_seconds_sum`:                            0.02,
		`mailfountain_dns_transfers_total{result="refused"}`:                         1,
		`mailfountain_dns_notifies_total{result="acknowledged"}`:                     1,
		`mailfountain_pppoe_sessions_total`:                                          2,
		`mailfountain_pppoe_restarts_total`:                                          1,
		`mailfountain_pppoe_up`:                                                      1,
		`mailfountain_led_pattern{pattern="setup"}`:                                  0,
		`mailfountain_led_pattern{pattern="steady"}`:                                 0,
		`mailfountain_led_pattern{pattern="error"}`:                                  1,
		`mailfountain_led_pattern{pattern="off"}`:                                    0,
		`mailfountain_confirm_pending`:                                               1,
		`mailfountain_confirm_rollbacks_total{result="done"}`:                        1,
		`mailfountain_confirm_rollbacks_total{result="failed"}`:                      1,
		`mailfountain_dhcp_replies_total{kind="offer"}`:                              1,
		`mailfountain_dhcp_replies_total{kind="ack"}`:                                2,
		`mailfountain_dhcp_replies_total{kind="dropped"}`:                            1,
		`mailfountain_dhcp_leases_active`:                                            3,
		`mailfountain_dhcp_pool_free`:                                                148,
		`mailfountain_firewall_rules_applied_total{op="add"}`:                        29,
		`mailfountain_firewall_rules_applied_total{op="delete"}`:                     1,
		`mailfountain_firewall_drift_corrected_total`:                                2,
		`mailfountain_firewall_apply_duration_seconds_count`:                         2,
		`mailfountain_firewall_apply_duration_seconds_sum`:                           0.004,
		`mailfountain_network_netlink_changes_total`:                                 5,
		`mailfountain_network_drift_corrected_total`:                                 2,
		`mailfountain_dhcp_client_lease`:                                             1,
		`mailfountain_dhcp_client_exchanges_total{kind="discover",result="ok"}`:      1,
		`mailfountain_dhcp_client_exchanges_total{kind="renew",result="nak"}`:        1,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if diff := g - v; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	// Only the series the calls made: no failure for a success, no
	// change counted for a failed apply, no drift of 0.
	for k := range got {
		if strings.HasPrefix(k, "mailfountain_") && !strings.Contains(k, "_bucket") &&
			!strings.HasPrefix(k, "mailfountain_reconciler_last_success_timestamp_seconds") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s = %v", k, got[k])
			}
		}
	}
	// Converged: accounts by its apply, mail by its plan without changes;
	// dns never.
	for _, r := range []string{"accounts", "mail"} {
		k := `mailfountain_reconciler_last_success_timestamp_seconds{reconciler="` + r + `"}`
		ts, ok := got[k]
		if !ok || ts < float64(before.Unix()) || ts > float64(after.Unix()+1) {
			t.Errorf("%s = %v (present %v), want between %d and %d", k, ts, ok, before.Unix(), after.Unix()+1)
		}
	}
	if _, ok := got[`mailfountain_reconciler_last_success_timestamp_seconds{reconciler="dns"}`]; ok {
		t.Error("dns never converged, yet has a last success time")
	}
	// The Go runtime's and the process's collectors.
	for _, k := range []string{"go_goroutines", "process_resident_memory_bytes", "process_start_time_seconds"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}
}

// TestServeOnlyMetrics: Serve answers GET /metrics, nothing else.
func TestServeOnlyMetrics(t *testing.T) {
	url := serve(t, newMetrics(t))
	base := strings.TrimSuffix(url, metrics.Path)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", metrics.Path, http.StatusOK},
		{"HEAD", metrics.Path, http.StatusOK},
		{"GET", "/", http.StatusNotFound},
		{"GET", "/debug/pprof/", http.StatusNotFound},
		{"POST", metrics.Path, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

// TestNil: a nil *Metrics (a daemon without --metrics) takes every call.
func TestNil(t *testing.T) {
	var m *metrics.Metrics
	m.Planned("accounts", time.Second, 1, nil)
	m.Applied("accounts", time.Second, 1, errors.New("x"))
	m.DriftCorrected("accounts", 1)
	m.Held()
	m.Unheld()
	m.Session("mx")
	m.Refused("mx", connlimit.TooMany)
	m.Reply("mx", 250)
	m.Delivery("mx", smtpd.DeliveryDelivered)
	m.Login("imap", auth.LoginOK)
	m.Enqueued()
	m.Recipients(queue.ResultDelivered, 1)
	m.QueueSize(1)
	m.OutboundConnection(true, false)
	m.OutboundRecipient("relay", "temporary")
	m.MTASTSRefused()
	m.DNSQuery(dnsd.UDP, "noerror")
	m.DNSRateLimited(dnsd.Dropped)
	m.DNSZoneSwap(time.Millisecond)
	m.DNSTransfer(dnsd.Allowed)
	m.DNSNotify(dnsd.Failed)
	m.PPPoESession()
	m.PPPoERestart()
	m.PPPoEUp(true)
	m.LEDPattern(string(hw.PatternSteady))
	m.ConfirmPending(true)
	m.ConfirmRollback(true)
	m.DHCPReply(dhcpd.Nak)
	m.DHCPLeases(1, 1)
	m.FirewallApplied(1, 1, time.Millisecond)
	m.FirewallDriftCorrected(1)
	m.NetlinkChanges(1)
	m.NetlinkDriftCorrected(1)
	m.DHCPClientLease(true)
	m.DHCPClientExchange("renew", "ok")
}

// TestRegisterTwice: New on a registry that has the metrics already says
// so rather than panic.
func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(reg, nil); err == nil {
		t.Error("second New on the same registry: no error")
	}
	if _, err := metrics.New(nil, nil); err == nil {
		t.Error("New without a registry: no error")
	}
}

// The hooks the servers call per connection and per reply allocate
// nothing once their series exists.
func TestHooksDoNotAllocate(t *testing.T) {
	m := newMetrics(t)
	hooks := map[string]func(){
		"Reply":      func() { m.Reply("mx", 250) },
		"Session":    func() { m.Session("mx") },
		"Refused":    func() { m.Refused("mx", connlimit.TooMany) },
		"Delivery":   func() { m.Delivery("mx", smtpd.DeliveryDelivered) },
		"Login":      func() { m.Login("smtp", "ok") },
		"Enqueued":   func() { m.Enqueued() },
		"Recipients": func() { m.Recipients(queue.ResultDelivered, 1) },
		"QueueSize":  func() { m.QueueSize(3) },
	}
	for name, f := range hooks {
		f()
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}
