package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// wanStatus is what `mfapply status --json` says of the WAN link.
type wanStatus struct {
	Method  string `json:"method"`
	Port    string `json:"port"`
	Account string `json:"account"`
	State   struct {
		Up      bool      `json:"up"`
		Address string    `json:"address"`
		Gateway string    `json:"gateway"`
		DNS     []string  `json:"dns"`
		Since   time.Time `json:"since"`
		Detail  string    `json:"detail"`
		Until   time.Time `json:"until"`
	} `json:"state"`
}

// statusWAN is the WAN line of `mfapply status` ("" when it has none)
// and the WAN of its --json (nil when it has none).
func statusWAN(t *testing.T, data string) (string, *wanStatus) {
	t.Helper()
	code, out, errOut := mfapply(t, "", "--data", data, "status")
	if code != 0 {
		t.Fatalf("mfapply status: exit %d: %s%s", code, out, errOut)
	}
	line := ""
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "WAN link: ") {
			line = strings.TrimSuffix(l, "\n")
		}
	}
	code, out, errOut = mfapply(t, "", "--data", data, "status", "--json")
	var st struct {
		Running bool       `json:"running"`
		WAN     *wanStatus `json:"wan"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !st.Running {
		t.Fatalf("mfapply status --json: exit %d: %s%s", code, out, errOut)
	}
	return line, st.WAN
}

// waitWAN waits until the status's WAN line matches re, and returns the
// line and the --json's WAN.
func waitWAN(t *testing.T, data, what string, re *regexp.Regexp) (string, *wanStatus) {
	t.Helper()
	var line string
	var w *wanStatus
	waitFor(t, what, func() error {
		line, w = statusWAN(t, data)
		if !re.MatchString(line) {
			return fmt.Errorf("mfapply status says %q, want %s", line, re)
		}
		return nil
	})
	t.Logf("mfapply status: %s", line)
	return line, w
}

// TestNetworkStatusWAN: `mfapply status` shows the box's WAN link, from
// the real daemon on a virtual box: a DHCP WAN with no server answering
// is down and says why; once dnsmasq answers in the WAN peer, the lease
// (address, router, DNS, since, expiry); a PPPoE WAN on this kernel,
// without PPP, is down with the reason of the real pppd's exit and the
// next try; a static WAN its address. --json carries the same.
func TestNetworkStatusWAN(t *testing.T) {
	b := &boxNet{virtualBox: newVirtualBox(t), dir: t.TempDir()}
	needTool(t, "dnsmasq")
	needTool(t, "pppd")
	b.data = filepath.Join(b.dir, "data")
	b.state = filepath.Join(b.dir, "state.yaml")
	b.create(t)
	wan := b.peer("wan")
	b.must(t, wan, b.ip, "addr", "add", upstreamRouter+"/24", "dev", "eth0")
	b.start(t, stateDoc("bob")) // router mode, a DHCP WAN
	waitVersions(t, b.data, 1)

	// No DHCP server yet.
	_, w := waitWAN(t, b.data, "the DHCP WAN down", regexp.MustCompile(`^WAN link: dhcp on wan: down \(no DHCP server answered on wan(; trying again in [^)]+)?\)$`))
	if w == nil || w.Method != "dhcp" || w.Port != "wan" || w.State.Up || w.State.Detail != "no DHCP server answered on wan" {
		t.Errorf("status --json of the DHCP WAN down: %+v", w)
	}

	b.background(t, wan, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range=10.77.0.50,10.77.0.60,2m",
		"--dhcp-option=3,"+upstreamRouter, "--dhcp-option=6,"+upstreamRouter,
		"--dhcp-leasefile="+filepath.Join(b.dir, "upstream.leases"), "--pid-file=")
	_, w = waitWAN(t, b.data, "the lease in the status", regexp.MustCompile(
		`^WAN link: dhcp on wan: 10\.77\.0\.(5\d|60)/24 via 10\.77\.0\.1, DNS 10\.77\.0\.1 \(since \d\d:\d\d:\d\d, lease until \d\d:\d\d:\d\d\)$`))
	if w == nil || !w.State.Up || !strings.HasPrefix(w.State.Address, "10.77.0.") || w.State.Gateway != upstreamRouter ||
		strings.Join(w.State.DNS, " ") != upstreamRouter || w.State.Until.Sub(w.State.Since) < time.Minute || w.State.Detail != "" {
		t.Errorf("status --json of the lease: %+v", w)
	}
	// The address is the one the reconciler puts on the port.
	waitFor(t, "the lease's address on the port", func() error {
		if a := b.addr4(t, b.name, "wan"); a.String() != w.State.Address {
			return fmt.Errorf("the status says %s, the port has %s", w.State.Address, a)
		}
		return nil
	})

	b.apply(t, strings.Replace(stateDoc("bob"), "wan: {method: dhcp}", "wan: {method: pppoe, username: fti/abc@fai, password: secret}", 1), 2)
	_, w = waitWAN(t, b.data, "PPPoE down with pppd's reason", regexp.MustCompile(
		`^WAN link: pppoe on wan as fti/abc@fai: down \(pppd exited with status 1: a fatal error(; trying again in \d+(\.\d+)?m?s)?\)$`))
	if w == nil || w.Method != "pppoe" || w.Account != "fti/abc@fai" || w.State.Up || w.State.Detail != "pppd exited with status 1: a fatal error" {
		t.Errorf("status --json of PPPoE: %+v", w)
	}
	// pppd got the document's credentials, the password in a file only
	// the box reads.
	options, err := os.ReadFile(filepath.Join(b.data, "pppoe", "options"))
	if err != nil || !strings.Contains(string(options), "\nuser \"fti/abc@fai\"\n") || strings.Contains(string(options), `"secret"`) {
		t.Errorf("pppd's options (%v):\n%s", err, options)
	}
	secrets := filepath.Join(b.data, "pppoe", "secrets")
	if data, err := os.ReadFile(secrets); err != nil || !strings.Contains(string(data), "\npassword \"secret\"\n") {
		t.Errorf("pppd's secrets (%v):\n%s", err, data)
	}
	if fi, err := os.Stat(secrets); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("pppd's secrets have mode %v, want 0600", fi.Mode().Perm())
	}

	b.apply(t, strings.Replace(stateDoc("bob"), "wan: {method: dhcp}", "wan: {method: static, address: 203.0.113.10/24, gateway: 203.0.113.1, dns: [203.0.113.53]}", 1), 3)
	_, w = waitWAN(t, b.data, "the static WAN", regexp.MustCompile(`^WAN link: static on wan: 203\.0\.113\.10/24 via 203\.0\.113\.1, DNS 203\.0\.113\.53$`))
	if w == nil || w.Method != "static" || !w.State.Up || w.State.Address != "203.0.113.10/24" {
		t.Errorf("status --json of the static WAN: %+v", w)
	}
}

// TestNetworkStatusWithoutHardware: off a box the status shows no WAN
// link, in words or in JSON.
func TestNetworkStatusWithoutHardware(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemonProc(t, "--data", data, "-f", state, "--hardware", "none")
	waitVersions(t, data, 1)
	if line, w := statusWAN(t, data); line != "" || w != nil {
		t.Errorf("without box hardware the status shows %q, %+v", line, w)
	}
}
