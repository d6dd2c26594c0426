package dnszone

import "testing"

func TestLive(t *testing.T) {
	var l Live
	s, changed := l.Load()
	if s == nil || len(s.Zones) != 0 {
		t.Fatalf("zero Live: %+v", s)
	}
	select {
	case <-changed:
		t.Fatal("changed before any Publish")
	default:
	}
	next := &Set{Zones: []Zone{{Origin: "ma-societe.fr."}}}
	l.Publish(next)
	select {
	case <-changed:
	default:
		t.Fatal("Publish did not close the channel")
	}
	if s, _ := l.Load(); s != next {
		t.Fatalf("Load after Publish: %+v", s)
	}
}
