// Package metricstest is a stand-in for *metrics.Metrics in the servers'
// tests: it counts the calls of their Metrics hooks.
package metricstest

import (
	"fmt"
	"maps"
	"sync"
	"time"
)

// Counts counts the calls of the hooks by their arguments: "session mx",
// "refused pop3 <reason>", "reply mx 2xx", "delivery mx delivered",
// "login smtp ok", "outbound connection opened tls", "outbound recipient
// direct delivered", "outbound mta-sts refused", "forward cache hit",
// "forward exchange ok", "forward discarded", "dns query udp noerror",
// "dns rate limited slipped", "dns zone swap", "dns transfer allowed",
// "dns notify acknowledged", "pppoe session", "pppoe restart", "pppoe
// up", "pppoe down". Its zero value is ready;
// "dns notify acknowledged", "firewall applied" (per commit), "firewall
// rules added" and "firewall rules deleted" (per rule), "firewall drift
// corrected" (per correction). Its zero value is ready;
// it is safe for concurrent use.
type Counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *Counts) add(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[fmt.Sprintf(format, args...)]++
}

func (m *Counts) Session(service string)          { m.add("session %s", service) }
func (m *Counts) Refused(service, reason string)  { m.add("refused %s %s", service, reason) }
func (m *Counts) Reply(service string, code int)  { m.add("reply %s %dxx", service, code/100) }
func (m *Counts) Delivery(service, result string) { m.add("delivery %s %s", service, result) }
func (m *Counts) Login(protocol, result string)   { m.add("login %s %s", protocol, result) }
func (m *Counts) Enqueued()                       { m.add("enqueued") }
func (m *Counts) Recipients(result string, n int) {
	for range n {
		m.add("recipients %s", result)
	}
}
func (m *Counts) QueueSize(messages int) {}

func (m *Counts) OutboundConnection(reused, tls bool) {
	state, enc := "opened", "plain"
	if reused {
		state = "reused"
	}
	if tls {
		enc = "tls"
	}
	m.add("outbound connection %s %s", state, enc)
}
func (m *Counts) OutboundRecipient(route, result string) {
	m.add("outbound recipient %s %s", route, result)
}
func (m *Counts) MTASTSRefused() { m.add("outbound mta-sts refused") }

func (m *Counts) ForwardCache(result string) { m.add("forward cache %s", result) }
func (m *Counts) ForwardExchange(result string, took time.Duration) {
	m.add("forward exchange %s", result)
}
func (m *Counts) ForwardDiscarded()                { m.add("forward discarded") }
func (m *Counts) DNSQuery(transport, rcode string) { m.add("dns query %s %s", transport, rcode) }
func (m *Counts) DNSRateLimited(action string)     { m.add("dns rate limited %s", action) }
func (m *Counts) DNSZoneSwap(took time.Duration)   { m.add("dns zone swap") }
func (m *Counts) DNSTransfer(result string)        { m.add("dns transfer %s", result) }
func (m *Counts) DNSNotify(result string)          { m.add("dns notify %s", result) }

func (m *Counts) PPPoESession() { m.add("pppoe session") }
func (m *Counts) PPPoERestart() { m.add("pppoe restart") }
func (m *Counts) PPPoEUp(up bool) {
	if up {
		m.add("pppoe up")
	} else {
		m.add("pppoe down")
	}
}
func (m *Counts) FirewallApplied(added, deleted int, took time.Duration) {
	m.add("firewall applied")
	m.addN("firewall rules added", added)
	m.addN("firewall rules deleted", deleted)
}
func (m *Counts) FirewallDriftCorrected(n int) { m.addN("firewall drift corrected", n) }

// addN counts n calls of key at once (n rules of one call).
func (m *Counts) addN(key string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	if n > 0 {
		m.n[key] += n
	}
}

// Counts returns a copy of the counts so far.
func (m *Counts) Counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.n)
}
