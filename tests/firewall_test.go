package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/metrics"
)

// firewallDoc is a router document with the given port forwards.
func firewallDoc(forwards ...string) string {
	return "system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}, forwards: [" + strings.Join(forwards, ", ") + "]}\n" +
		"smtp: {mode: direct}\ndomains:\n  - name: a.example\n    accounts:\n      - id: bob\n"
}

// TestFirewallDaemon: mailfountaind on a virtual box writes the table inet
// mailfountain of the document's port forwards, follows an edit, and puts
// the table right after `nft flush table` by hand: at once, by the
// firewall reconciler's watch of nftables events (the resync is an hour
// away).
func TestFirewallDaemon(t *testing.T) {
	b := newVirtualBox(t)
	nft := needTool(t, "nft")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(firewallDoc("{port: 8080, to: 192.168.1.20, to_port: 80}")), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware(), "--resync", "1h", "--metrics", "127.0.0.1:0")
	waitVersions(t, data, 1)
	has := func(parts ...string) func() error {
		return func() error {
			out, err := b.in(b.name, nft, "list", "table", "inet", "mailfountain")
			if err != nil {
				return err
			}
			for _, p := range parts {
				if !strings.Contains(out, p) {
					return fmt.Errorf("no %q in\n%s", p, out)
				}
			}
			return nil
		}
	}
	waitFor(t, "the forward's DNAT in the box", has(`oifname "wan" masquerade`, "dnat ip to 192.168.1.20:80"))

	b.must(t, b.name, nft, "flush", "table", "inet", "mailfountain")
	if has("dnat ip to 192.168.1.20:80")() == nil {
		t.Fatal("the table was not flushed")
	}
	waitFor(t, "the flushed table put right", has(`oifname "wan" masquerade`, "dnat ip to 192.168.1.20:80"))

	// The daemon's metrics (served in the box's namespace: curl there)
	// count the rules added and the drift corrected.
	curl := needTool(t, "curl")
	var url string
	waitFor(t, "the metrics' address in the log", func() error {
		for _, m := range listeningRE.FindAllStringSubmatch(d.stderr.String(), -1) {
			if m[1] == "metrics" {
				url = "http://" + m[2] + "/metrics"
				return nil
			}
		}
		return errors.New("not yet")
	})
	waitFor(t, "the firewall's metrics", func() error {
		out, err := b.in(b.name, curl, "-sf", url)
		if err != nil {
			return err
		}
		got, err := metrics.Samples(strings.NewReader(out))
		if err != nil {
			return err
		}
		// 26 rules at the first apply, 26 again after the flush.
		for k, want := range map[string]float64{
			`mailfountain_firewall_rules_applied_total{op="add"}`: 52,
			`mailfountain_firewall_drift_corrected_total`:         26,
			`mailfountain_firewall_apply_duration_seconds_count`:  2,
		} {
			if got[k] != want {
				return fmt.Errorf("%s = %v, want %v", k, got[k], want)
			}
		}
		return nil
	})

	saveByRename(t, state, firewallDoc("{port: 8080, to: 192.168.1.20, to_port: 80}", "{port: 2222, to: 192.168.1.21, to_port: 22}"))
	waitVersions(t, data, 2)
	waitFor(t, "the new forward in the box", has("dnat ip to 192.168.1.20:80", "dnat ip to 192.168.1.21:22"))
}
