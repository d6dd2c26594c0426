package pppoe

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"mailfountain.dev/mailfountain/hw/hwtest"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

// The package's tests run inside a virtual box (as root): its WAN port
// "wan", and the upstream modem's namespace with its "eth0".
func TestMain(m *testing.M) { os.Exit(hwtest.Main(m)) }

// oneAC is what Debian's pppoe 3.15 printed for pppoe-server -C 'MF AC'
// -S MFSVC -S other.
const oneAC = `Access-Concentrator: MF AC
       Service-Name: MFSVC
       Service-Name: other
Got a cookie: d8 ef 1c 37 60 af ec 5a 28 7f b4 9d 9f 5e 33 92 75 14 00 00
AC-Ethernet-Address: 4e:79:fd:ae:10:30
--------------------------------------------------
`

func TestParseDiscovery(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	tests := []struct {
		name, out string
		want      []Concentrator
	}{
		{"one", oneAC, []Concentrator{{Name: "MF AC", MAC: mac("4e:79:fd:ae:10:30"), Services: []string{"MFSVC", "other"}, Cookie: true}}},
		{"none", "", nil},
		{"two, service before name", oneAC + "\n       Service-Name: \nAccess-Concentrator: bras-2\nAC-Ethernet-Address: 02:00:00:00:00:02\n--------------------------------------------------\n",
			[]Concentrator{
				{Name: "MF AC", MAC: mac("4e:79:fd:ae:10:30"), Services: []string{"MFSVC", "other"}, Cookie: true},
				{Name: "bras-2", MAC: mac("02:00:00:00:00:02")},
			}},
		{"empty name", "Access-Concentrator: \n       Service-Name: x\nAC-Ethernet-Address: 02:00:00:00:00:03\n",
			[]Concentrator{{Name: "", MAC: mac("02:00:00:00:00:03"), Services: []string{"x"}}}},
		{"dropped PADO then a good one", "Access-Concentrator: dropped\nAccess-Concentrator: good\nAC-Ethernet-Address: 02:00:00:00:00:04\n",
			[]Concentrator{{Name: "good", MAC: mac("02:00:00:00:00:04")}}},
		{"address without a name", "       Service-Name: x\nAC-Ethernet-Address: 02:00:00:00:00:05\n", nil},
		{"bad address", "Access-Concentrator: a\nAC-Ethernet-Address: 02:00:00:00:00\n", nil},
		{"long address", "Access-Concentrator: a\nAC-Ethernet-Address: 02:00:00:00:00:00:00:01\n", nil},
		{"not ended", "Access-Concentrator: a\n       Service-Name: x\n", nil},
		{"error tags", "Access-Concentrator: a\nGot a Generic-Error tag: no\nGot a Relay-ID: 01\nAC-Ethernet-Address: 02:00:00:00:00:06\n",
			[]Concentrator{{Name: "a", MAC: mac("02:00:00:00:00:06")}}},
		{"binary name", "Access-Concentrator: \x00\xff\x1b[2J\nAC-Ethernet-Address: 02:00:00:00:00:07\n",
			[]Concentrator{{Name: "\x00\xff\x1b[2J", MAC: mac("02:00:00:00:00:07")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseDiscovery([]byte(tt.out))
			if !equalConcentrators(got, tt.want) {
				t.Errorf("parseDiscovery = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func equalConcentrators(a, b []Concentrator) bool {
	return slices.EqualFunc(a, b, func(x, y Concentrator) bool {
		return x.Name == y.Name && x.MAC.String() == y.MAC.String() && slices.Equal(x.Services, y.Services) && x.Cookie == y.Cookie
	})
}

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(oneAC))
	f.Add([]byte(oneAC + "\n" + oneAC))
	f.Add([]byte("Access-Concentrator: a\nAC-Ethernet-Address: 02:00:00:00:00:07\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		acs := parseDiscovery(out)
		if len(acs) > strings.Count(string(out), "AC-Ethernet-Address: ") {
			t.Fatalf("%d concentrators from %d address lines", len(acs), strings.Count(string(out), "AC-Ethernet-Address: "))
		}
		for _, ac := range acs {
			if len(ac.MAC) != 6 || strings.Contains(ac.Name, "\n") {
				t.Fatalf("concentrator %+v", ac)
			}
			for _, s := range ac.Services {
				if s == "" || strings.Contains(s, "\n") {
					t.Fatalf("concentrator %+v: service %q", ac, s)
				}
			}
		}
	})
}

// TestDiscoverPPPoEServer runs PPPoE discovery for real: rp-pppoe's pppoe
// -A on the box's WAN port, Debian's pppoe-server as the ISP's access
// concentrator in the modem's namespace, over the veth between them.
// Discovery is user space (raw Ethernet frames): no kernel PPP needed.
func TestDiscoverPPPoEServer(t *testing.T) {
	box := hwtest.Box(t)
	peer := hwtest.Peer(t, "wan")
	ip := testenv.NeedTool(t, "ip")
	server := testenv.NeedTool(t, "pppoe-server")
	program := testenv.NeedTool(t, "pppoe")
	wan := box.Profile.WAN
	l, err := netlink.LinkByName(wan)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ip, "-netns", peer, "-o", "link", "show", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, after, _ := strings.Cut(string(out), "link/ether ")
	peerMAC, err := net.ParseMAC(strings.Fields(after + " x")[0])
	if err != nil {
		t.Fatalf("the modem's address in %q: %v", out, err)
	}

	// ip netns exec execs pppoe-server: the process is the server's.
	srv := exec.Command(ip, "netns", "exec", peer, server, "-F", "-I", "eth0", "-C", "MF AC #1", "-S", "MFSVC", "-S", "internet")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopServer := func() {
		if !stopped {
			stopped = true
			srv.Process.Signal(syscall.SIGTERM)
			srv.Wait()
		}
	}
	t.Cleanup(stopServer)

	d := Discoverer{Program: program, Wait: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acs, err := d.Discover(ctx, wan)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	want := []Concentrator{{Name: "MF AC #1", MAC: peerMAC, Services: []string{"MFSVC", "internet"}, Cookie: true}}
	if !equalConcentrators(acs, want) {
		t.Errorf("Discover = %+v, want %+v", acs, want)
	}

	// No concentrator: none, and no error.
	stopServer()
	start := time.Now()
	acs, err = d.Discover(ctx, wan)
	if err != nil || len(acs) != 0 {
		t.Errorf("Discover without a server = %+v, %v; want none, no error", acs, err)
	}
	t.Logf("discovery without an answer took %v", time.Since(start).Round(time.Millisecond))

	// Discovery cannot run: an error.
	if acs, err := d.Discover(ctx, "nosuch0"); err == nil {
		t.Errorf("Discover on a missing interface = %+v, no error", acs)
	}
	// A context that ends stops it.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := d.Discover(short, wan); err == nil {
		t.Error("Discover past its context: no error")
	}
}
