package mailauth

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
)

// testDNS is a dnstest server with the knobs the resolver's tests turn:
// silent names, truncated UDP answers, lost queries, a delay. The knobs
// are set before the queries they concern.
type testDNS struct {
	*dnstest.Server
	Addr string

	mu       sync.Mutex
	drop     map[string]bool // names never answered
	truncate map[string]bool // names whose UDP answers are truncated
	lose     map[string]int  // names whose next n queries are not answered
	delay    time.Duration   // before every answer
	dropAll  bool
}

// startDNS serves records given in zone-file syntax ("name. TXT \"...\"")
// until the test ends.
func startDNS(t testing.TB, records ...string) *testDNS {
	t.Helper()
	z := &testDNS{Server: dnstest.New(t, records...), drop: map[string]bool{}, truncate: map[string]bool{}, lose: map[string]int{}}
	z.Addr = z.Server.Addr()
	z.SetHandler(z.serve)
	return z
}

func (z *testDNS) set(m map[string]bool, names ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, n := range names {
		m[strings.ToLower(dns.Fqdn(n))] = true
	}
}

func (z *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	var name string
	if len(req.Question) == 1 {
		name = strings.ToLower(req.Question[0].Name)
	}
	z.mu.Lock()
	delay, drop, trunc := z.delay, z.dropAll || z.drop[name], z.truncate[name]
	if z.lose[name] > 0 {
		z.lose[name]--
		drop = true
	}
	z.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if drop {
		return
	}
	m := z.Answer(req)
	if trunc && !dnstest.IsTCP(w) {
		m.Truncated = true
		m.Answer = nil
	}
	_ = w.WriteMsg(m)
}

// servfail makes the server answer SERVFAIL for names.
func (z *testDNS) servfail(names ...string) { z.SetRcode(dns.RcodeServerFailure, names...) }
