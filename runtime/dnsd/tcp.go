package dnsd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/connlimit"
)

// ServeTCP answers the connections that come to ln until ctx is done,
// then closes ln and them, and returns once their goroutines are done.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := connlimit.Accept(ctx, ln, func(err error, delay time.Duration) {
			s.log.Warn("cannot accept a DNS connection, retrying", "err", err, "in", delay)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("serve DNS on tcp %s: %w", ln.Addr(), err)
		}
		src := connlimit.AddrOf(c.RemoteAddr())
		if reason := s.tcpConns.Admit(src); reason != "" {
			s.log.Debug("DNS connection refused", "client", src, "reason", reason)
			s.met.Refused("dns", reason)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer s.tcpConns.Release(src)
			s.serveConn(ctx, c, src)
		})
	}
}

// serveConn answers the queries of one connection in turn (RFC 7766),
// until the client closes it, is idle too long, or reaches a limit.
func (s *Server) serveConn(ctx context.Context, c net.Conn, src netip.Addr) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	end := time.Now().Add(s.cfg.TCPLifetime)
	in := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(in)
	out := make([]byte, 2+dns.MaxMsgSize)
	for range s.cfg.MaxTCPQueries {
		c.SetReadDeadline(earliest(time.Now().Add(s.cfg.TCPIdleTimeout), end))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		raw := (*in)[:binary.BigEndian.Uint16(l[:])]
		if _, err := io.ReadFull(c, raw); err != nil {
			return
		}
		ix := s.ix.Load()
		req, resp := s.parse(raw, src, true, ix)
		if req == nil {
			s.met.DNSQuery(TCP, Dropped)
			continue
		}
		if resp == nil {
			if t := req.msg.Question[0].Qtype; t == dns.TypeAXFR || t == dns.TypeIXFR {
				if err := s.transfer(c, ix, req, end, out); err != nil {
					s.log.Debug("transfer ended", "client", src, "zone", req.qname, "err", err)
					return
				}
				continue
			}
			resp = s.respond(ix, req)
		}
		if resp == nil {
			resp = s.recurse(ctx, req)
		}
		if err := s.writeTCP(c, req, resp, end, out); err != nil {
			s.met.DNSQuery(TCP, Dropped)
			return
		}
		s.met.DNSQuery(TCP, rcodeName(resp.Rcode))
	}
}

// writeTCP sends one message with its length. The caller counts the
// query: a transfer is one, of many messages.
func (s *Server) writeTCP(c net.Conn, req *request, resp *dns.Msg, end time.Time, buf []byte) error {
	msg := s.finish(req, resp, buf[2:])
	if msg == nil {
		return errors.New("cannot pack the response")
	}
	if &msg[0] != &buf[2] {
		// PackBuffer chose another buffer.
		buf = append(buf[:2], msg...)
	}
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	c.SetWriteDeadline(earliest(time.Now().Add(s.cfg.TCPWriteTimeout), end))
	_, err := c.Write(buf[:2+len(msg)])
	return err
}

// transferChunk is the uncompressed size of a transfer's message, well
// under the 64 KiB of a TCP message.
const transferChunk = 16 << 10

// transfer answers an AXFR or IXFR (as an AXFR: RFC 1995 4) to the
// secondaries of the zone, REFUSED to anyone else (RFC 5936 6).
func (s *Server) transfer(c net.Conn, ix *index, req *request, end time.Time, buf []byte) error {
	z := ix.zones[req.qname]
	if z == nil || req.msg.Question[0].Qclass != dns.ClassINET || !slices.Contains(z.secondaries, req.src) {
		s.met.DNSTransfer(Refused)
		s.log.Info("zone transfer refused", "client", req.src, "zone", req.qname)
		s.met.DNSQuery(TCP, rcodeName(dns.RcodeRefused))
		return s.writeTCP(c, req, reply(req.msg, dns.RcodeRefused), end, buf)
	}
	s.met.DNSTransfer(Allowed)
	s.met.DNSQuery(TCP, rcodeName(dns.RcodeSuccess))
	soa := z.records[0]
	if req.msg.Question[0].Qtype == dns.TypeIXFR && len(req.msg.Ns) == 1 {
		// A secondary that is up to date gets our SOA alone (RFC 1995 2).
		if theirs, ok := req.msg.Ns[0].(*dns.SOA); ok && theirs.Serial == z.serial {
			resp := reply(req.msg, dns.RcodeSuccess)
			resp.Authoritative = true
			resp.Answer = []dns.RR{soa}
			return s.writeTCP(c, req, resp, end, buf)
		}
	}
	records := append(slices.Clip(z.records), soa) // SOA ... SOA (RFC 5936 2.2)
	for len(records) > 0 {
		n, size := 0, 0
		for n < len(records) && (n == 0 || size+dns.Len(records[n]) <= transferChunk) {
			size += dns.Len(records[n])
			n++
		}
		resp := reply(req.msg, dns.RcodeSuccess)
		resp.Authoritative = true
		resp.Compress = true
		resp.Answer = records[:n]
		records = records[n:]
		if err := s.writeTCP(c, req, resp, end, buf); err != nil {
			return err
		}
	}
	s.log.Info("zone transferred", "client", req.src, "zone", z.origin, "serial", z.serial)
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// rcodeName is the label of rcode for Metrics, built without allocating
// for the usual ones.
func rcodeName(rcode int) string {
	switch rcode {
	case dns.RcodeSuccess:
		return "noerror"
	case dns.RcodeFormatError:
		return "formerr"
	case dns.RcodeServerFailure:
		return "servfail"
	case dns.RcodeNameError:
		return "nxdomain"
	case dns.RcodeNotImplemented:
		return "notimp"
	case dns.RcodeRefused:
		return "refused"
	case dns.RcodeBadVers:
		return "badvers"
	}
	return "other"
}
