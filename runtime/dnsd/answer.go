package dnsd

import (
	"context"
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// Transports, for Metrics.
const (
	UDP = "udp"
	TCP = "tcp"
)

// TTLs of the LAN view's answers: short, so that the end of setup mode or
// a new LAN address reaches the clients soon.
const (
	lanTTL   = 60
	setupTTL = 0
)

// maxChase bounds the CNAMEs followed within a zone for one answer.
const maxChase = 8

// request is one query being answered.
type request struct {
	msg *dns.Msg
	src netip.Addr
	tcp bool
	lan bool // the client gets the LAN view
	// edns is the client's OPT, nil without EDNS0.
	edns *dns.OPT
	// size is the largest response the client takes over UDP.
	size int
	// qname is the question's name in lower case.
	qname string
	// rrlName is the name response rate limiting counts the response
	// under (see rrl.go).
	rrlName string
}

// parse reads a query. It returns the request, or a response already
// made (FORMERR, NOTIMP, BADVERS), or neither: the packet is dropped (a
// response, or too short to answer).
func (s *Server) parse(raw []byte, src netip.Addr, tcp bool, ix *index) (*request, *dns.Msg) {
	if len(raw) < 12 || raw[2]&0x80 != 0 {
		// No header to answer, or a response (QR=1): answering those
		// invites loops.
		return nil, nil
	}
	req := &request{src: src, tcp: tcp, lan: ix.lan.contains(src), size: dns.MinMsgSize}
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		// Answer from the header alone: its ID and opcode.
		resp := new(dns.Msg)
		resp.Id = binary.BigEndian.Uint16(raw)
		resp.Response = true
		resp.Opcode = int(raw[2]>>3) & 0xF
		resp.Rcode = dns.RcodeFormatError
		return req, resp
	}
	req.msg = m
	if m.Opcode != dns.OpcodeQuery {
		return req, reply(m, dns.RcodeNotImplemented)
	}
	if len(m.Question) != 1 {
		return req, reply(m, dns.RcodeFormatError)
	}
	req.qname = lower(m.Question[0].Name)
	req.rrlName = req.qname
	// EDNS0 (RFC 6891 6.1.1): one OPT, in the additional section, owned
	// by the root.
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				return req, reply(m, dns.RcodeFormatError)
			}
		}
	}
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			if req.edns != nil || opt.Hdr.Name != "." {
				req.edns = nil
				return req, reply(m, dns.RcodeFormatError)
			}
			req.edns = opt
		}
	}
	if req.edns != nil {
		req.size = max(dns.MinMsgSize, min(int(req.edns.UDPSize()), s.cfg.UDPSize))
		if req.edns.Version() != 0 {
			return req, reply(m, dns.RcodeBadVers)
		}
	}
	return req, nil
}

// reply is an empty response to m with rcode.
func reply(m *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.Rcode = rcode
	return resp
}

// respond answers req from ix. It returns nil when the query goes to the
// recursor (see recurse).
func (s *Server) respond(ix *index, req *request) *dns.Msg {
	m := req.msg
	q := m.Question[0]
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.Compress = true
	if req.lan {
		resp.RecursionAvailable = s.cfg.Recursor != nil
	}
	if q.Qclass != dns.ClassINET {
		resp.Rcode = dns.RcodeRefused
		req.rrlName = ""
		return resp
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// Transfers are answered by transfer, over TCP, to secondaries;
		// here only what the others get.
		resp.Rcode = dns.RcodeRefused
		req.rrlName = ""
		return resp
	case dns.TypeOPT, dns.TypeMAILA, dns.TypeMAILB:
		resp.Rcode = dns.RcodeNotImplemented
		req.rrlName = ""
		return resp
	}
	if req.lan && s.lanAnswer(ix, req, resp) {
		return resp
	}
	if z := ix.find(req.qname); z != nil {
		s.authoritative(z, req, resp)
		return resp
	}
	if req.lan && m.RecursionDesired {
		return nil
	}
	// Never an open resolver.
	resp.Rcode = dns.RcodeRefused
	req.rrlName = ""
	return resp
}

// lanAnswer answers the box's LAN address for the LAN names, and for
// every name in setup mode; the other family's type gets NODATA, so that
// a client does not reach the box by its public address.
func (s *Server) lanAnswer(ix *index, req *request, resp *dns.Msg) bool {
	l := &ix.lan
	if !l.setup && !l.names[req.qname] {
		return false
	}
	qtype := req.msg.Question[0].Qtype
	want, other := uint16(dns.TypeA), uint16(dns.TypeAAAA)
	if l.addr.Is6() {
		want, other = other, want
	}
	ttl := uint32(lanTTL)
	if l.setup {
		ttl = setupTTL
	}
	switch {
	case qtype == want || (qtype == dns.TypeANY && l.setup):
		hdr := dns.RR_Header{Name: req.qname, Rrtype: want, Class: dns.ClassINET, Ttl: ttl}
		if want == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: l.addr.AsSlice()})
		} else {
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: l.addr.AsSlice()})
		}
	case qtype == other, l.setup:
		// NODATA.
	default:
		// Other types of a LAN name: as for any name.
		return false
	}
	resp.Authoritative = true
	return true
}

// authoritative answers req from z (RFC 1034 4.3.2, without the
// recursion): the records, a CNAME chain within the zone, a wildcard's
// records (RFC 4592), a referral below a zone cut, or NXDOMAIN or NODATA
// with the SOA.
func (s *Server) authoritative(z *zone, req *request, resp *dns.Msg) {
	qtype := req.msg.Question[0].Qtype
	qname := req.qname
	resp.Authoritative = true
	for hop := 0; ; hop++ {
		if z.cuts {
			if cut, ns := z.cut(qname); ns != nil && !(qtype == dns.TypeDS && cut == qname) {
				// A referral: the data below the cut is not ours.
				resp.Authoritative = len(resp.Answer) > 0
				resp.Ns = append(resp.Ns, ns...)
				z.glue(resp, ns)
				req.rrlName = cut
				return
			}
		}
		n, wildcard := z.names[qname], false
		if n == nil {
			// RFC 4592 3.3.1: the source of synthesis is the wildcard
			// child of the closest encloser; the closest encloser is
			// an existing name (empty non-terminals included), so a
			// wildcard never answers for names below one that exists.
			if w := z.names["*."+z.closestEncloser(qname)]; w != nil {
				n, wildcard = w, true
			} else {
				resp.Rcode = dns.RcodeNameError
				resp.Ns = append(resp.Ns, z.negSOA)
				// Every name that does not exist is one response for
				// rate limiting: random names are no way around it.
				req.rrlName = z.origin
				return
			}
		}
		if qtype == dns.TypeANY {
			// RFC 8482 4.1: one RRset of the name, not all.
			if len(n.sets) == 0 {
				resp.Ns = append(resp.Ns, z.negSOA)
				return
			}
			resp.Answer = appendOwned(resp.Answer, n.sets[0].rrs, wildcard, qname)
			return
		}
		if rrs := n.get(qtype); rrs != nil {
			resp.Answer = appendOwned(resp.Answer, rrs, wildcard, qname)
			z.additional(resp, rrs)
			return
		}
		cname := n.get(dns.TypeCNAME)
		if cname == nil {
			resp.Ns = append(resp.Ns, z.negSOA) // NODATA
			return
		}
		resp.Answer = appendOwned(resp.Answer, cname, wildcard, qname)
		target := dns.CanonicalName(cname[0].(*dns.CNAME).Target)
		if hop >= maxChase || !dns.IsSubDomain(z.origin, target) {
			// Outside the zone: the client's resolver follows it.
			return
		}
		qname = target
	}
}

// appendOwned appends rrs to dst, copies renamed to qname when they come
// from a wildcard.
func appendOwned(dst, rrs []dns.RR, wildcard bool, qname string) []dns.RR {
	if !wildcard {
		return append(dst, rrs...)
	}
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = qname
		dst = append(dst, c)
	}
	return dst
}

// closestEncloser is the longest existing ancestor of qname, which does
// not exist itself; the origin at worst.
func (z *zone) closestEncloser(qname string) string {
	for name := parent(qname); len(name) > len(z.origin); name = parent(name) {
		if z.names[name] != nil {
			return name
		}
	}
	return z.origin
}

// cut returns the highest zone cut at or above qname, below the origin,
// and its NS records; nil if there is none.
func (z *zone) cut(qname string) (string, []dns.RR) {
	var name string
	var ns []dns.RR
	for n := qname; len(n) > len(z.origin); n = parent(n) {
		if nd := z.names[n]; nd != nil {
			if rrs := nd.get(dns.TypeNS); rrs != nil {
				name, ns = n, rrs
			}
		}
	}
	return name, ns
}

// additional adds the zone's addresses of the names an answer's records
// point to (RFC 1034 3.7): name servers' glue, mail exchangers.
func (z *zone) additional(resp *dns.Msg, rrs []dns.RR) {
	for _, rr := range rrs {
		var target string
		switch rr := rr.(type) {
		case *dns.NS:
			target = rr.Ns
		case *dns.MX:
			target = rr.Mx
		case *dns.SRV:
			target = rr.Target
		default:
			return
		}
		z.addAddrs(resp, dns.CanonicalName(target))
	}
}

// glue adds the addresses of a referral's name servers that are in the
// zone.
func (z *zone) glue(resp *dns.Msg, ns []dns.RR) {
	for _, rr := range ns {
		if rr, ok := rr.(*dns.NS); ok {
			z.addAddrs(resp, dns.CanonicalName(rr.Ns))
		}
	}
}

func (z *zone) addAddrs(resp *dns.Msg, name string) {
	n := z.names[name]
	if n == nil {
		return
	}
	resp.Extra = append(resp.Extra, n.get(dns.TypeA)...)
	resp.Extra = append(resp.Extra, n.get(dns.TypeAAAA)...)
}

// recurse asks the recursor for a LAN client, and answers SERVFAIL when
// it fails or there is none.
func (s *Server) recurse(ctx context.Context, req *request) *dns.Msg {
	resp := reply(req.msg, dns.RcodeSuccess)
	resp.RecursionAvailable = s.cfg.Recursor != nil
	if s.cfg.Recursor == nil {
		resp.Rcode = dns.RcodeServerFailure
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RecursorTimeout)
	defer cancel()
	q := new(dns.Msg)
	q.Id = req.msg.Id
	q.RecursionDesired = true
	q.CheckingDisabled = req.msg.CheckingDisabled
	q.Question = []dns.Question{req.msg.Question[0]}
	got, err := s.cfg.Recursor.Resolve(ctx, q)
	if err != nil || got == nil {
		s.log.Debug("recursor failed", "name", req.qname, "err", err)
		resp.Rcode = dns.RcodeServerFailure
		return resp
	}
	resp.Rcode = got.Rcode
	if resp.Rcode > 0xF {
		// An extended rcode of the upstream's EDNS is not ours to pass on.
		resp.Rcode = dns.RcodeServerFailure
		return resp
	}
	resp.Compress = true
	resp.AuthenticatedData = got.AuthenticatedData
	resp.Answer = append(resp.Answer, got.Answer...)
	resp.Ns = append(resp.Ns, got.Ns...)
	for _, rr := range got.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			resp.Extra = append(resp.Extra, rr)
		}
	}
	return resp
}

// finish packs resp for req: EDNS0, and truncation to what the client
// takes over UDP (RFC 1035 4.2.1, RFC 6891 7). It returns nil if resp
// cannot be packed: the query is dropped.
func (s *Server) finish(req *request, resp *dns.Msg, buf []byte) []byte {
	if req != nil && req.edns != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(uint16(s.cfg.UDPSize))
		if req.edns.Do() {
			opt.SetDo() // RFC 3225 3
		}
		resp.Extra = append(resp.Extra, opt)
	}
	limit := dns.MaxMsgSize
	if req != nil && !req.tcp {
		limit = req.size
	}
	resp.Truncate(limit)
	out, err := resp.PackBuffer(buf)
	if err != nil {
		s.log.Debug("cannot pack a response", "err", err)
		return nil
	}
	return out
}
