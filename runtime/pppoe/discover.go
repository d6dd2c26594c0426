package pppoe

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// DefaultDiscoveryProgram is rp-pppoe's client (Debian's package pppoe),
// whose -A option runs PPPoE's discovery stage alone (RFC 2516 5.1, 5.2:
// a PADI broadcast, the PADO offers) and prints the offers.
const DefaultDiscoveryProgram = "/usr/sbin/pppoe"

// DefaultDiscoveryWait is how long pppoe -A waits for offers after each of
// its 3 PADI broadcasts: an access concentrator that answers is found
// within one wait, none after three.
const DefaultDiscoveryWait = 2 * time.Second

// Concentrator is an access concentrator that offered a session (a PADO).
// Its name and services are as the network sent them: bytes to quote
// before showing them.
type Concentrator struct {
	Name     string           // its AC-Name tag
	MAC      net.HardwareAddr // the Ethernet address the PADO came from
	Services []string         // its Service-Name tags, the empty one left out
	Cookie   bool             // it sent an AC-Cookie
}

// Discoverer runs PPPoE discovery with rp-pppoe's pppoe -A. Its zero value
// uses the defaults.
type Discoverer struct {
	Program string        // "" is DefaultDiscoveryProgram
	Wait    time.Duration // per PADI; 0 is DefaultDiscoveryWait; whole seconds
}

// Discover asks, on the Ethernet interface iface (the WAN port), which
// access concentrators answer, with the default Discoverer.
func Discover(ctx context.Context, iface string) ([]Concentrator, error) {
	return Discoverer{}.Discover(ctx, iface)
}

// Discover broadcasts PADI on iface and returns the access concentrators
// that answered with a PADO, in their order. None answered: no
// concentrator and no error (pppd would then fail its discovery too: the
// line, the modem or the modem's mode is at fault, not the credentials).
// An error says that discovery could not run (no such interface, not
// root, ctx done).
//
// It takes up to 3 waits when none answers, one when one does.
func (d Discoverer) Discover(ctx context.Context, iface string) ([]Concentrator, error) {
	if err := checkInterface(iface); err != nil {
		return nil, err
	}
	prog := d.Program
	if prog == "" {
		prog = DefaultDiscoveryProgram
	}
	wait := d.Wait
	if wait <= 0 {
		wait = DefaultDiscoveryWait
	}
	secs := max(1, int((wait+time.Second-1)/time.Second))
	cmd := exec.CommandContext(ctx, prog, "-A", "-I", iface, "-t", strconv.Itoa(secs))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = 1<<20, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("pppoe discovery on %s: %w", iface, ctx.Err())
	}
	acs := parseDiscovery(stdout.Bytes())
	if len(acs) > 0 {
		return acs, nil
	}
	// rp-pppoe 3.15 exits 0 when no concentrator answered, later versions
	// 1: both say so on stderr.
	if err == nil || bytes.Contains(stderr.Bytes(), []byte("Timeout waiting for PADO")) {
		return nil, nil
	}
	msg := strings.TrimSpace(string(stderr.Bytes()))
	if msg == "" {
		return nil, fmt.Errorf("pppoe discovery on %s: %w", iface, err)
	}
	return nil, fmt.Errorf("pppoe discovery on %s: %w: %s", iface, err, msg)
}

// parseDiscovery reads what pppoe -A prints (rp-pppoe's discovery.c), one
// block per PADO, its tags in the packet's order, the sender's address
// last:
//
//	Access-Concentrator: NAME
//	       Service-Name: SERVICE
//	Got a cookie: 01 02 …
//	AC-Ethernet-Address: 4e:79:fd:ae:10:30
//	--------------------------------------------------
//
// Blocks after the first begin with an empty line. A block without its
// address (a PADO pppoe dropped after printing its tags) or without its
// Access-Concentrator line is no concentrator; an empty name is one. The output is the network's: a name may hold any
// byte but a newline, and what looks like a tag line inside a name cannot
// be told apart: a concentrator can only lie about itself.
func parseDiscovery(out []byte) []Concentrator {
	var acs []Concentrator
	var cur Concentrator
	named := false
	reset := func() { cur, named = Concentrator{}, false }
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case line == "":
			reset()
		case strings.HasPrefix(line, "Access-Concentrator: "):
			if named {
				reset() // the block before had no address: not kept
			}
			cur.Name = strings.TrimPrefix(line, "Access-Concentrator: ")
			named = true
		case strings.HasPrefix(strings.TrimLeft(line, " "), "Service-Name: "):
			if s := strings.TrimPrefix(strings.TrimLeft(line, " "), "Service-Name: "); s != "" {
				cur.Services = append(cur.Services, s)
			}
		case strings.HasPrefix(line, "Got a cookie:"):
			cur.Cookie = true
		case strings.HasPrefix(line, "AC-Ethernet-Address: "):
			mac, err := net.ParseMAC(strings.TrimPrefix(line, "AC-Ethernet-Address: "))
			if err == nil && len(mac) == 6 && named {
				cur.MAC = mac
				acs = append(acs, cur)
			}
			reset()
		}
	}
	return acs
}

// limitedBuffer keeps the first max bytes written to it and drops the
// rest: a program's output is bounded in memory.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
