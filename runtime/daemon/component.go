package daemon

import (
	"context"
	"fmt"
	"sync"
)

// Component is something the daemon hosts for as long as it runs, whatever
// the document says: the control socket. The servers the document starts
// and stops (SMTP, POP3, IMAP; DNS, DHCP later) are Config.Servers'.
type Component interface {
	// Name identifies the component in logs and errors.
	Name() string
	// Run serves until ctx is done, then releases what it holds (sockets,
	// files) before returning. Returning earlier is a failure: the daemon
	// stops, so that a box with a dead server does not look healthy.
	Run(ctx context.Context) error
}

// ComponentFunc adapts a function to a Component.
type ComponentFunc struct {
	ComponentName string
	Serve         func(ctx context.Context) error
}

func (c ComponentFunc) Name() string                  { return c.ComponentName }
func (c ComponentFunc) Run(ctx context.Context) error { return c.Serve(ctx) }

// group runs components until its context is done or one of them stops.
type group struct {
	wg   sync.WaitGroup
	errc chan error // buffered: one slot per component, so none blocks
}

func startGroup(ctx context.Context, cs []Component) *group {
	g := &group{errc: make(chan error, len(cs))}
	for _, c := range cs {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			err := c.Run(ctx)
			if ctx.Err() != nil {
				return // asked to stop; whatever it returns is how it stopped
			}
			if err == nil {
				err = fmt.Errorf("component %s stopped on its own", c.Name())
			} else {
				err = fmt.Errorf("component %s: %w", c.Name(), err)
			}
			g.errc <- err
		}()
	}
	return g
}

// failed delivers the first component that stopped while it should run.
func (g *group) failed() <-chan error { return g.errc }

// wait returns once every component has returned; the caller cancels
// their context first.
func (g *group) wait() { g.wg.Wait() }
