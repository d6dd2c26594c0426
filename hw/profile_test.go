package hw

import "testing"

func TestLookup(t *testing.T) {
	tests := []struct {
		model  string
		ok     bool
		single bool
	}{
		{"S100", true, true},
		{"S200", true, true},
		{"M500", true, false},
		{"virtual", true, false},
		{"m500", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		p, ok := Lookup(tt.model)
		if ok != tt.ok || p.SingleDomain() != tt.single {
			t.Errorf("Lookup(%q) = %+v, %v", tt.model, p, ok)
		}
		if ok && (p.WAN == "" || len(p.LAN) == 0) {
			t.Errorf("%s has no ports", tt.model)
		}
	}
}
