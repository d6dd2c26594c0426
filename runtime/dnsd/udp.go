package dnsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is the number of datagrams a reader takes, and answers, with
// one system call each way where the system has recvmmsg and sendmmsg:
// under load, the system calls are most of the cost of an answer.
const udpBatch = 32

// ServeUDP answers the queries that come to pc until ctx is done, then
// closes pc and returns once the answers under way are sent. Responses
// to clients outside the LAN are rate limited (RRL); recursions for LAN
// clients run beside the readers, at most Config.MaxRecursions at once.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			if err := s.readUDP(ctx, pc, &wg); err != nil {
				select {
				case errc <- err:
				default:
				}
				pc.Close()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		if ctx.Err() == nil {
			return fmt.Errorf("serve DNS on udp %s: %w", pc.LocalAddr(), err)
		}
	default:
	}
	return nil
}

// udpConn reads and writes datagrams by batches: x/net's ipv4 and ipv6
// PacketConn are both one.
type udpConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// singleConn is a udpConn of any PacketConn, one datagram at a time.
type singleConn struct{ pc net.PacketConn }

func (c singleConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	n, addr, err := c.pc.ReadFrom(ms[0].Buffers[0])
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].NN, ms[0].Addr = n, 0, addr
	return 1, nil
}

func (c singleConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	if _, err := c.pc.WriteTo(ms[0].Buffers[0], ms[0].Addr); err != nil {
		return 0, err
	}
	return 1, nil
}

// batchConn returns the udpConn of pc, and whether it gets the
// destination address of each datagram (see pktinfo).
func batchConn(pc net.PacketConn) (udpConn, bool) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return singleConn{pc}, false
	}
	la, _ := uc.LocalAddr().(*net.UDPAddr)
	if la != nil && la.IP.To4() != nil {
		return ipv4.NewPacketConn(uc), pktinfo(uc)
	}
	return ipv6.NewPacketConn(uc), pktinfo(uc)
}

// pktinfo asks the kernel for the destination address of each datagram
// when uc is bound to every address (0.0.0.0, ::): a box with several
// addresses must answer from the one it was asked at, or the client
// drops the answer.
func pktinfo(uc *net.UDPConn) bool {
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok || !la.IP.IsUnspecified() {
		return false
	}
	// A socket of either family takes one of the two; a dual-stack one
	// both.
	err6 := ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	err4 := ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	return err6 == nil || err4 == nil
}

// replyOOB is the control message that sends an answer from the
// destination of the query that brought oob; nil if it holds none.
func replyOOB(oob []byte) []byte {
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		if cm6.Dst.To4() == nil {
			return (&ipv6.ControlMessage{Src: cm6.Dst, IfIndex: cm6.IfIndex}).Marshal()
		}
		return (&ipv4.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	return nil
}

// addrOf is the client address of a datagram's source.
func addrOf(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		ip, _ := netip.AddrFromSlice(ua.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().WithZone("").Unmap()
}

func (s *Server) readUDP(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) error {
	c, withOOB := batchConn(pc)
	n := udpBatch
	if _, single := c.(singleConn); single {
		n = 1
	}
	oobLen := 0
	if withOOB {
		oobLen = len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)) +
			len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface))
	}
	in := make([]ipv4.Message, n)
	out := make([]ipv4.Message, n)
	outBufs := make([][]byte, n)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, dns.MaxMsgSize)}
		if withOOB {
			in[i].OOB = make([]byte, oobLen)
		}
		outBufs[i] = make([]byte, dns.MaxMsgSize)
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		got, err := c.ReadBatch(in, 0)
		if err != nil {
			var t interface{ Temporary() bool }
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.As(err, &t) && t.Temporary() {
				continue
			}
			return err
		}
		k := 0
		for i := range got {
			m := &in[i]
			var oob []byte
			if withOOB {
				oob = replyOOB(m.OOB[:m.NN])
			}
			answer := s.udpQuery(ctx, wg, c, m.Buffers[0][:m.N], m.Addr, oob, outBufs[k])
			if answer == nil {
				continue
			}
			out[k].Buffers[0], out[k].Addr, out[k].OOB = answer, m.Addr, oob
			k++
		}
		s.writeUDP(c, out[:k])
	}
}

// udpQuery answers one datagram: the answer packed in buf, or nil when
// there is none (dropped, or left to a recursion that sends it).
func (s *Server) udpQuery(ctx context.Context, wg *sync.WaitGroup, c udpConn, raw []byte, addr net.Addr, oob, buf []byte) []byte {
	src := addrOf(addr)
	ix := s.ix.Load()
	req, resp := s.parse(raw, src, false, ix)
	if req == nil {
		s.met.DNSQuery(UDP, Dropped)
		return nil
	}
	if resp == nil {
		resp = s.respond(ix, req)
	}
	if resp == nil {
		select {
		case s.recursions <- struct{}{}:
			wg.Go(func() {
				defer func() { <-s.recursions }()
				b := s.bufs.Get().(*[]byte)
				defer s.bufs.Put(b)
				if answer := s.packUDP(req, s.recurse(ctx, req), *b); answer != nil {
					s.writeUDP(c, []ipv4.Message{{Buffers: [][]byte{answer}, Addr: addr, OOB: oob}})
				}
			})
			return nil
		default:
			resp = reply(req.msg, dns.RcodeServerFailure)
			resp.RecursionAvailable = true
		}
	}
	return s.packUDP(req, resp, buf)
}

// packUDP packs resp for req, unless response rate limiting drops it,
// and counts it.
func (s *Server) packUDP(req *request, resp *dns.Msg, buf []byte) []byte {
	if !req.lan && s.rrl.applies(req.src) {
		var qtype uint16
		if req.msg != nil && len(req.msg.Question) > 0 {
			qtype = req.msg.Question[0].Qtype
		}
		switch s.rrl.check(req.src, qtype, resp.Rcode, req.rrlName) {
		case drop:
			s.met.DNSRateLimited(Dropped)
			s.met.DNSQuery(UDP, Dropped)
			return nil
		case slip:
			s.met.DNSRateLimited(Slipped)
			resp.Answer, resp.Ns, resp.Extra = nil, nil, nil
			resp.Truncated = true
		}
	}
	out := s.finish(req, resp, buf)
	if out == nil {
		s.met.DNSQuery(UDP, Dropped)
		return nil
	}
	s.met.DNSQuery(UDP, rcodeName(resp.Rcode))
	return out
}

// writeUDP sends ms; a datagram that cannot be sent (the client's
// address unreachable, a full buffer) is lost as UDP may lose it.
func (s *Server) writeUDP(c udpConn, ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := c.WriteBatch(ms, 0)
		if err != nil {
			s.log.Debug("cannot send a DNS response", "client", ms[0].Addr, "err", err)
			n = max(n, 1)
		}
		ms = ms[n:]
	}
}
