package forward

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnsd/dnstest"
)

// upstream is a dnstest server on 127.0.0.1 playing a recursive
// resolver (RA, AD given back to DO), with knobs for failures and
// forgeries.
type upstream struct {
	*dnstest.Server
	t    testing.TB
	addr netip.AddrPort

	mu    sync.Mutex
	mode  string        // see serve
	delay time.Duration // before every answer
	last  *dns.Msg      // the last query received
}

// startUpstream serves records until the test ends.
func startUpstream(t testing.TB, records ...string) *upstream {
	t.Helper()
	u := &upstream{Server: dnstest.New(t, records...), t: t}
	u.addr = netip.MustParseAddrPort(u.Addr())
	u.SetHandler(u.serve)
	return u
}

func (u *upstream) set(mode string, delay time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode, u.delay = mode, delay
}

func (u *upstream) lastQuery() *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// answer is the real answer to r: the records of the name and type,
// NODATA or NXDOMAIN with the SOA, as a recursive resolver gives it.
func (u *upstream) answer(r *dns.Msg) *dns.Msg {
	m := u.Answer(r)
	m.RecursionAvailable = true
	if o := r.IsEdns0(); o != nil && o.Do() {
		m.AuthenticatedData = true
	}
	return m
}

// serve answers per mode:
//
//	""               the answer
//	drop             nothing
//	servfail         SERVFAIL; refused: REFUSED; formerr: FORMERR
//	truncate         over UDP an empty answer with TC; over TCP the answer
//	forge-question   first a response to another question, then the answer
//	forge-type       first a response of another type, then the answer
//	forge-id         first a response with another ID, then the answer
//	forge-query      first the query itself (not a response), then the answer
//	forge-garbage    first bytes that do not parse, then the answer
//	forge-addr       first a forged answer from another socket, then the answer
//	forge-only       only a response to another question
func (u *upstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	tcp := dnstest.IsTCP(w)
	u.mu.Lock()
	mode, delay := u.mode, u.delay
	u.last = r.Copy()
	u.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	forged := func() *dns.Msg {
		m := u.answer(r)
		m.Answer = dnstest.Parse(u.t, r.Question[0].Name+" 3600 IN A 6.6.6.6")
		m.Rcode = dns.RcodeSuccess
		return m
	}
	real := u.answer(r)
	switch mode {
	case "drop":
		return
	case "servfail", "refused", "formerr":
		m := new(dns.Msg)
		m.SetRcode(r, map[string]int{"servfail": dns.RcodeServerFailure, "refused": dns.RcodeRefused, "formerr": dns.RcodeFormatError}[mode])
		_ = w.WriteMsg(m)
		return
	case "truncate":
		if !tcp {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
	case "forge-question", "forge-only":
		m := forged()
		m.Question[0].Name = "evil.example."
		m.Answer[0].Header().Name = "evil.example."
		_ = w.WriteMsg(m)
		if mode == "forge-only" {
			return
		}
	case "forge-type":
		m := forged()
		m.Question[0].Qtype = dns.TypeAAAA
		_ = w.WriteMsg(m)
	case "forge-id":
		m := forged()
		m.Id = r.Id + 1
		_ = w.WriteMsg(m)
	case "forge-query":
		m := forged()
		m.Response = false
		_ = w.WriteMsg(m)
	case "forge-garbage":
		_, _ = w.Write([]byte{0, 1, 2})
		_, _ = w.Write([]byte{byte(r.Id >> 8), byte(r.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 7, 'e', 'x'})
	case "forge-addr":
		b, err := forged().Pack()
		if err != nil {
			u.t.Error(err)
			return
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			u.t.Error(err)
			return
		}
		_, _ = pc.WriteTo(b, w.RemoteAddr())
		pc.Close()
	}
	if strings.HasPrefix(mode, "forge-") {
		time.Sleep(50 * time.Millisecond) // the forgery first
	}
	_ = w.WriteMsg(real)
}
