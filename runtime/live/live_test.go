package live

import (
	"sync"
	"testing"
)

// TestValue: nil before the first Publish; each Publish closes the
// channel a reader got before it, and only that one.
func TestValue(t *testing.T) {
	var p Value[string]
	v, ch := p.Load()
	if v != nil {
		t.Fatalf("before Publish: %v", *v)
	}
	one, two := "one", "two"
	p.Publish(&one)
	select {
	case <-ch:
	default:
		t.Fatal("Publish did not close the reader's channel")
	}
	v, ch = p.Load()
	if v != &one {
		t.Fatalf("Load = %v, want the published value", v)
	}
	select {
	case <-ch:
		t.Fatal("the channel is closed before the next Publish")
	default:
	}
	p.Publish(&two)
	<-ch
	if v, _ := p.Load(); *v != "two" {
		t.Fatalf("Load = %q, want two", *v)
	}
}

// TestValueConcurrent runs readers and publishers together (for -race).
func TestValueConcurrent(t *testing.T) {
	var p Value[int]
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				n := i*1000 + j
				p.Publish(&n)
				if v, _ := p.Load(); v == nil {
					t.Error("nil after a Publish")
				}
			}
		})
	}
	wg.Wait()
}
