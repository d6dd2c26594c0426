package dnsd

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// FuzzServe: the handler on raw bytes, from the LAN and from outside,
// over UDP and TCP: it never panics, and what it answers is a response
// to the query, within the size the transport allows.
func FuzzServe(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"mail.ma-societe.fr.", dns.TypeA, true},
		{"x.wild.ma-societe.fr.", dns.TypeTXT, false},
		{"www.ma-societe.fr.", dns.TypeA, true},
		{"big.ma-societe.fr.", dns.TypeTXT, false},
		{"ma-societe.fr.", dns.TypeANY, true},
		{"ma-societe.fr.", dns.TypeAXFR, false},
		{"www.example.com.", dns.TypeA, true},
		{"www.sub.ma-societe.fr.", dns.TypeA, false},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(4096, true)
		}
		raw, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	live := &dnszone.Live{}
	live.Publish(testSet(f, serial, false))
	s := New(Config{Zones: live, Recursor: &staticRecursor{}})
	ix := s.ix.Load()
	buf := make([]byte, dns.MaxMsgSize)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, src := range []netip.Addr{wanClient, lanClient} {
			for _, tcp := range []bool{false, true} {
				out, _ := s.handle(context.Background(), ix, raw, src, tcp, buf)
				if out == nil {
					continue
				}
				if len(raw) < 12 || raw[2]&0x80 != 0 {
					t.Fatalf("an answer to a response or to less than a header: %x", raw)
				}
				if binary.BigEndian.Uint16(out) != binary.BigEndian.Uint16(raw) || out[2]&0x80 == 0 {
					t.Fatalf("not a response to the query: %x", out)
				}
				if !tcp && len(out) > DefaultUDPSize {
					t.Fatalf("%d bytes over UDP", len(out))
				}
				r := new(dns.Msg)
				if err := r.Unpack(out); err != nil {
					t.Fatalf("answer unpack: %v: %x", err, out)
				}
			}
		}
	})
}

// handle answers one query that is not a transfer, recursion included,
// as serveConn does: the response packed in buf, or nil to drop the
// query.
func (s *Server) handle(ctx context.Context, ix *index, raw []byte, src netip.Addr, tcp bool, buf []byte) ([]byte, *dns.Msg) {
	req, resp := s.parse(raw, src, tcp, ix)
	if req == nil {
		return nil, nil
	}
	if resp == nil {
		resp = s.respond(ix, req)
	}
	if resp == nil {
		resp = s.recurse(ctx, req)
	}
	return s.finish(req, resp, buf), resp
}
