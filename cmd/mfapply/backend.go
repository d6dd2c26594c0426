package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"mailfountain.dev/mailfountain/runtime/accountstatus"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// backend is what the commands need of an applier. *applier.Applier is
// the data directory opened here; *control.Client is the daemon's applier
// behind its control socket. The commands are written once for both.
type backend interface {
	Plan(ctx context.Context, srcs []schema.Source) (*applier.Plan, error)
	Verify(ctx context.Context, p *applier.Plan) error
	Apply(ctx context.Context, p *applier.Plan, message, origin string) (*applier.Result, error)
	ApplyWithin(ctx context.Context, p *applier.Plan, message, origin string, within time.Duration) (*applier.Result, error)
	PendingConfirm(ctx context.Context) (*applier.PendingConfirm, error)
	Confirm(ctx context.Context) (*applier.PendingConfirm, error)
	History(ctx context.Context) ([]store.Version, error)
	Show(ctx context.Context, n int) (*store.Version, error)
	Diff(ctx context.Context, n, m int) ([]schema.ResourceChange, error)
	PlanRollback(ctx context.Context, n int) (*applier.Plan, error)
	Export(ctx context.Context, w io.Writer) error
	Import(ctx context.Context, r io.Reader) error
	WritePlanFile(p *applier.Plan, path string) error
	ReadPlanFile(path string) (*applier.Plan, error)
	AccountStatus(ctx context.Context, domain string) ([]accountstatus.Account, error)
	Archives(ctx context.Context) ([]applier.ArchiveInfo, error)
	RestoreArchive(ctx context.Context, name string) (*applier.ArchiveInfo, error)
	PurgeArchive(ctx context.Context, name string) (*applier.ArchiveInfo, error)
	Close() error
}

var (
	_ backend = (*applier.Applier)(nil)
	_ backend = (*control.Client)(nil)
)

// open returns the daemon's applier when one serves the data directory,
// else opens the data directory here. mustExist refuses to create a data
// directory that does not exist (commands that only read it).
func (c *cli) open(ctx context.Context, mustExist bool) (backend, error) {
	cl, err := control.Dial(c.dataDir)
	if err == nil {
		return cl, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, err
	}
	if mustExist {
		if _, err := os.Stat(c.dataDir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no data directory %s: nothing was applied there (--data DIR or MAILFOUNTAIN_DATA)", c.dataDir)
		}
	}
	a, err := c.openHere(ctx)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// openHere opens the data directory in this process, whether or not a
// daemon serves it.
func (c *cli) openHere(ctx context.Context) (*applier.Applier, error) {
	// Warnings and errors of the applier go to stderr; its progress is
	// what mfapply prints itself.
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return applier.Open(ctx, c.dataDir, logger, applier.WithBox(c.box))
}
