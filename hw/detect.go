package hw

import (
	"os"
	"path/filepath"
	"strings"
)

// ModelFile is the file the box's system image installs, holding the
// model's name (S100, S200, M500): how `--hardware auto` recognises a
// real box.
const ModelFile = "/etc/mailfountain/model"

// Detect returns the profile of the box whose root file system is at
// root ("/" on the box itself; a directory laid out like it in tests),
// and false on any other machine: no model file, or one that names no
// real model. The virtual profile is never detected: it is asked for.
// The profile's files (the LED, the security code) are under root.
func Detect(root string) (*Profile, bool) {
	b, err := os.ReadFile(filepath.Join(root, ModelFile))
	if err != nil || len(b) > 64 {
		return nil, false
	}
	model := strings.TrimSpace(string(b))
	if model == "virtual" {
		return nil, false
	}
	p, ok := Lookup(model)
	if !ok {
		return nil, false
	}
	if p.LED != "" {
		p.LED = filepath.Join(root, p.LED)
	}
	if p.SecurityCode != "" {
		p.SecurityCode = filepath.Join(root, p.SecurityCode)
	}
	return &p, true
}
