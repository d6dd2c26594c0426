package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/hw"
)

func TestParseArgs(t *testing.T) {
	auto := hw.Selection{Kind: hw.SelectAuto}
	tests := []struct {
		name    string
		args    []string
		env     string // MAILFOUNTAIN_DATA
		want    options
		wantErr string
	}{
		{"defaults", []string{"-f", "s.yaml"}, "", options{dataDir: defaultDataDir, statePath: "s.yaml", resync: time.Minute, level: slog.LevelInfo, remotePort: 25, hardware: auto}, ""},
		{"env sets the data directory", []string{"-f", "s.yaml"}, "/env", options{dataDir: "/env", statePath: "s.yaml", resync: time.Minute, remotePort: 25, hardware: auto}, ""},
		{"flag beats env", []string{"--data", "/flag", "-f", "s.yaml"}, "/env", options{dataDir: "/flag", statePath: "s.yaml", resync: time.Minute, remotePort: 25, hardware: auto}, ""},
		{"resync and level", []string{"-f", "d", "--resync", "5s", "--log-level", "debug"}, "", options{dataDir: defaultDataDir, statePath: "d", resync: 5 * time.Second, level: slog.LevelDebug, remotePort: 25, hardware: auto}, ""},
		{"resync 0 disables", []string{"-f", "d", "--resync", "0"}, "", options{dataDir: defaultDataDir, statePath: "d", remotePort: 25, hardware: auto}, ""},
		{"metrics", []string{"-f", "d", "--metrics", "127.0.0.1:9100"}, "", options{dataDir: defaultDataDir, statePath: "d", resync: time.Minute, metrics: "127.0.0.1:9100", remotePort: 25, hardware: auto}, ""},
		{"outbound for tests", []string{"-f", "d", "--resolver", "127.0.0.1:5353", "--remote-port", "2525"}, "", options{dataDir: defaultDataDir, statePath: "d", resync: time.Minute, resolver: "127.0.0.1:5353", remotePort: 2525, hardware: auto}, ""},
		{"resolver without port", []string{"-f", "d", "--resolver", "127.0.0.1"}, "", options{}, "want host:port"},
		{"remote port 0", []string{"-f", "d", "--remote-port", "0"}, "", options{}, "want a port from 1 to 65535"},
		{"no -f", []string{"--data", "/x"}, "", options{}, "-f PATH is required"},
		{"negative resync", []string{"-f", "d", "--resync", "-1s"}, "", options{}, "must not be negative"},
		{"bad level", []string{"-f", "d", "--log-level", "loud"}, "", options{}, "--log-level"},
		{"stray argument", []string{"-f", "d", "extra"}, "", options{}, `unexpected argument "extra"`},
		{"empty data", []string{"-f", "d", "--data", ""}, "", options{}, "--data must not be empty"},
		{"virtual hardware", []string{"-f", "d", "--hardware", "virtual:t1"}, "", options{dataDir: defaultDataDir, statePath: "d", resync: time.Minute, remotePort: 25, hardware: hw.Selection{Kind: hw.SelectVirtual, Name: "t1"}}, ""},
		{"bad hardware", []string{"-f", "d", "--hardware", "box"}, "", options{}, "--hardware: hardware \"box\": want auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "MAILFOUNTAIN_DATA" {
					return tt.env
				}
				return ""
			}
			got, err := parseArgs(tt.args, getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.listen = listeners{} // TestListenFlags
			if *got != tt.want {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestListenFlags(t *testing.T) {
	noenv := func(string) string { return "" }
	o, err := parseArgs([]string{"-f", "s", "--smtp", "127.0.0.1:2525", "--imaps", "off"}, noenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"smtp": "127.0.0.1:2525", "submission": ":587", "submissions": ":465", "pop3": ":110", "pop3s": ":995", "imap": ":143", "imaps": "off", "dns": ":53", "dhcp": ":67"}
	for _, l := range o.listen.all() {
		if l.addr != want[l.flag] {
			t.Errorf("--%s = %q, want %q", l.flag, l.addr, want[l.flag])
		}
		if l.off() != (l.flag == "imaps") {
			t.Errorf("--%s off() = %v", l.flag, l.off())
		}
	}
}
