package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/hw"
)

// ledDoc is a box with one domain; admin and relay, when not empty, are
// the administrator's password hash and the smarthost's password file.
func ledDoc(admin, relayPass string) string {
	sys := "system: {model: M500}"
	if admin != "" {
		sys = fmt.Sprintf("system: {model: M500, admin: {password_hash: %q}}", admin)
	}
	smtp := "smtp: {mode: direct}"
	if relayPass != "" {
		smtp = fmt.Sprintf("smtp: {mode: direct, relay: {host: relay.example, username: box, password_file: %s}}", relayPass)
	}
	return sys + "\nnetwork: {mode: router, wan: {method: dhcp}}\n" + smtp + "\ndomains:\n  - name: led.example\n    accounts:\n      - id: bob\n"
}

// TestFrontLED: mailfountaind on the virtual box (its namespaces made
// for the test, removed after) shows its LED in DATA/led and in mfapply
// status: setup until the document has an administrator's password
// (manual 5), steady then, error while a resync fails (the smarthost's
// password file gone: the mail reconciler cannot plan), steady again once
// it is back, off when the daemon stops. The warranty card's security
// code is made once, readable by its owner only.
func TestFrontLED(t *testing.T) {
	b := newVirtualBox(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	pass := filepath.Join(dir, "relay.pass")
	if err := os.WriteFile(pass, []byte("relay-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(ledDoc("", pass)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware(), "--resync", "300ms")

	ledFile := filepath.Join(data, "led")
	want := func(pattern hw.Pattern, setup bool) {
		t.Helper()
		waitFor(t, "the LED showing "+string(pattern), func() error {
			b, err := os.ReadFile(ledFile)
			if err != nil {
				return err
			}
			if string(b) != string(pattern)+"\n" {
				return fmt.Errorf("%s says %q", ledFile, b)
			}
			return nil
		})
		code, out, errOut := mfapply(t, "", "--data", data, "status", "--json")
		var st struct {
			LED   string `json:"led"`
			Setup bool   `json:"setup"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("mfapply status --json: exit %d: %s%s", code, out, errOut)
		}
		if st.LED != string(pattern) || st.Setup != setup {
			t.Errorf("status --json: led %q, setup %v; want %q, %v", st.LED, st.Setup, pattern, setup)
		}
		_, out, _ = mfapply(t, "", "--data", data, "status")
		if !strings.Contains(out, "front LED: "+pattern.Describe()+"\n") {
			t.Errorf("mfapply status does not show the LED %s:\n%s", pattern, out)
		}
	}

	want(hw.PatternSetup, true)
	saveByRename(t, state, ledDoc(reneHash, pass))
	want(hw.PatternSteady, false)

	if err := os.Rename(pass, pass+".away"); err != nil {
		t.Fatal(err)
	}
	want(hw.PatternError, false)
	if err := os.Rename(pass+".away", pass); err != nil {
		t.Fatal(err)
	}
	want(hw.PatternSteady, false)

	// The virtual warranty card: made once, 0600, kept.
	cardPath := filepath.Join(data, hw.SecurityCodeFile)
	code, err := hw.ReadSecurityCode(cardPath)
	if err != nil {
		t.Fatalf("the virtual box's security code: %v", err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if c := p.waitExit(t, 10*time.Second); c != 0 {
		t.Fatalf("mailfountaind exit %d", c)
	}
	if b, _ := os.ReadFile(ledFile); string(b) != "off\n" {
		t.Errorf("LED after the daemon stopped: %q, want off", b)
	}

	// A second start keeps the card.
	p = startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware())
	want(hw.PatternSteady, false)
	if again, err := hw.ReadSecurityCode(cardPath); err != nil || again != code {
		t.Errorf("security code after a restart: %q, %v; want the first, %q", again, err, code)
	}
}

// TestFrontLEDWithoutHardware: on a machine that is no box nothing is
// driven: the status says "none", and no LED file nor security code is
// made.
func TestFrontLEDWithoutHardware(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(ledDoc(reneHash, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemonProc(t, "--data", data, "-f", state, "--hardware", "none")
	waitVersions(t, data, 1)
	code, out, errOut := mfapply(t, "", "--data", data, "status", "--json")
	var st struct {
		LED   string `json:"led"`
		Setup bool   `json:"setup"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("mfapply status --json: exit %d: %s%s", code, out, errOut)
	}
	if st.LED != string(hw.PatternNone) || st.Setup {
		t.Errorf("status --json: led %q, setup %v; want none, false", st.LED, st.Setup)
	}
	for _, f := range []string{"led", hw.SecurityCodeFile} {
		if _, err := os.Stat(filepath.Join(data, f)); !os.IsNotExist(err) {
			t.Errorf("DATA/%s without box hardware: %v", f, err)
		}
	}
}
