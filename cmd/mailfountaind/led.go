package main

import (
	"log/slog"
	"path/filepath"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/daemon"
	"mailfountain.dev/mailfountain/runtime/led"
)

// ledFile is the virtual box's LED in the data directory.
const ledFile = "led"

// daemonState is the daemon's status as the LED's loop reads it. d is set
// once the daemon exists, before it runs (the daemon's status shows the
// loop, and the loop reads the daemon's status).
type daemonState struct{ d *daemon.Daemon }

func (s *daemonState) LEDState() led.State {
	setup, failed, statuses := s.d.Health()
	return led.State{Setup: setup, Failed: failed != "" || led.Failed(statuses)}
}

// frontLED returns the loop of the box's front LED, with the source to
// point at the daemon; nil without box hardware, or when the LED cannot
// be opened (logged: the box serves mail without it).
func frontLED(box *hw.Box, dataDir string, m led.Metrics, logger *slog.Logger) (*led.Loop, *daemonState) {
	var drv led.Driver
	switch {
	case box == nil:
		return nil, nil
	case box.Virtual != "":
		drv = led.NewFile(filepath.Join(dataDir, ledFile))
	case box.Profile.LED == "":
		logger.Warn("front LED: the model has none in sysfs", "model", box.Profile.Model)
		return nil, nil
	default:
		s, err := led.NewSysfs(box.Profile.LED)
		if err != nil {
			logger.Warn("front LED: not driven", "err", err)
			return nil, nil
		}
		drv = s
	}
	src := &daemonState{}
	return led.New(led.Config{Driver: drv, Source: src, Logger: logger.With("component", "led"), Metrics: m}), src
}

// checkSecurityCode makes sure that the box has its security code (the
// virtual box's is made at its first start), so that a missing one is
// known before anyone needs it.
func checkSecurityCode(box *hw.Box, dataDir string, logger *slog.Logger) {
	if box == nil {
		return
	}
	if _, err := box.SecurityCode(dataDir); err != nil {
		logger.Warn("security code unavailable: the warranty card cannot reset the administrator's password", "err", err)
	}
}
