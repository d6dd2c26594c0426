package supervisor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/schema"
)

// echoServer is a datagram server: it answers each datagram with
// "CONFIG: DATAGRAM".
type echoServer struct {
	config  string
	running *atomic.Int32
}

func (s *echoServer) Serve(ctx context.Context, _ string, ln net.Listener) error {
	<-ctx.Done()
	return nil
}

func (s *echoServer) ServePacket(ctx context.Context, _ string, pc net.PacketConn) error {
	s.running.Add(1)
	defer s.running.Add(-1)
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		pc.WriteTo([]byte(s.config+": "+string(buf[:n])), from)
	}
}

// echoKind serves one datagram endpoint at addr; its config is the
// document's host name.
func echoKind(addr string, running *atomic.Int32, builds *atomic.Int32) Kind {
	return Kind{
		Name: "echo",
		Want: func(st *schema.State) (Spec, string) {
			return Spec{Endpoints: []Endpoint{{Name: "echo", Addr: addr, Network: "udp"}}, Config: st.System.Hostname}, ""
		},
		Build: func(context.Context, Spec) (Instance, error) {
			builds.Add(1)
			return &echoServer{running: running}, nil
		},
	}
}

// ask sends a datagram to addr and returns the answer, "" after a while.
func ask(t *testing.T, addr, what string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte(what)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// TestPacketEndpoint: a datagram endpoint is served on its own socket; a
// new instance (the configuration changed) takes the same address while
// the old one still reads, and the old one stops at once; stopping the
// server closes the socket.
func TestPacketEndpoint(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()

	var running, builds atomic.Int32
	k := echoKind(addr, &running, &builds)
	k.Build = func(_ context.Context, spec Spec) (Instance, error) {
		builds.Add(1)
		return &echoServer{config: spec.Config, running: &running}, nil
	}
	s := newSupervisor(t, Config{}, k)
	s.Converge(t.Context(), doc("one", false))
	st := endpoint(t, s, "echo")
	if st.State != StateServing || st.Addr != addr {
		t.Fatalf("status: %+v", st)
	}
	if got := ask(t, addr, "ping"); got != "one: ping" {
		t.Fatalf("answer %q", got)
	}

	s.Converge(t.Context(), doc("two", false))
	waitUntil(t, "the old instance to stop", func() bool { return running.Load() == 1 && draining(s) == 0 })
	for range 20 { // whichever socket the kernel picks, only the new one is left
		if got := ask(t, addr, "ping"); got != "two: ping" {
			t.Fatalf("answer after the reload %q", got)
		}
	}
	if builds.Load() != 2 {
		t.Fatalf("%d builds, want 2", builds.Load())
	}

	s.Stop()
	if running.Load() != 0 {
		t.Fatalf("%d instances still reading after Stop", running.Load())
	}
	if got := ask(t, addr, "ping"); got != "" {
		t.Fatalf("answer after Stop %q", got)
	}
}

// TestPacketEndpointNeedsPacketInstance: a kind whose instance cannot
// serve datagrams fails that endpoint with a clear error.
func TestPacketEndpointNeedsPacketInstance(t *testing.T) {
	k := &testKind{}
	kind := k.kind(time.Minute)
	want := kind.Want
	kind.Want = func(st *schema.State) (Spec, string) {
		spec, off := want(st)
		for i := range spec.Endpoints {
			spec.Endpoints[i].Network = "udp"
		}
		return spec, off
	}
	s := newSupervisor(t, Config{}, kind)
	s.Converge(t.Context(), doc("one", true))
	waitUntil(t, "the endpoint to fail", func() bool {
		st := endpoint(t, s, "line")
		return st.State == StateFailed && strings.Contains(st.Error, "serves no datagram endpoint")
	})
	if !s.Failing() {
		t.Error("Failing() = false")
	}
}

// deviceServer answers each datagram with its socket's device and
// whether it may broadcast.
type deviceServer struct{ echoServer }

func (s *deviceServer) ServePacket(ctx context.Context, _ string, pc net.PacketConn) error {
	buf := make([]byte, 512)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var dev string
		var bcast int
		rc, _ := pc.(*net.UDPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			dev, _ = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
			bcast, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST)
		})
		pc.WriteTo(fmt.Appendf(nil, "%s %d", dev, bcast), from)
	}
}

// TestPacketEndpointOnDevice: an endpoint with a Device is bound to it
// (the DHCP server's socket); every datagram socket may broadcast; a device that does not exist
// fails the endpoint, with its name.
func TestPacketEndpointOnDevice(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	for _, tc := range []struct{ device, answer, err string }{
		{"lo", "lo 1", ""},
		{"", " 1", ""},
		{"nosuchdev0", "", "on nosuchdev0: "},
	} {
		k := Kind{
			Name: "dev",
			Want: func(*schema.State) (Spec, string) {
				return Spec{Endpoints: []Endpoint{{Name: "dev", Addr: addr, Network: "udp", Device: tc.device}}}, ""
			},
			Build: func(context.Context, Spec) (Instance, error) { return &deviceServer{}, nil },
		}
		s := newSupervisor(t, Config{}, k)
		s.Converge(t.Context(), doc("one", false))
		st := endpoint(t, s, "dev")
		if tc.err != "" {
			if st.State != StateFailed || !strings.Contains(st.Error, tc.err) {
				t.Errorf("device %q: status %+v, want failed with %q", tc.device, st, tc.err)
			}
		} else if got := ask(t, addr, "ping"); got != tc.answer {
			t.Errorf("device %q: socket %q, want %q", tc.device, got, tc.answer)
		}
		s.Stop()
	}
}
