package smtpd

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"mailfountain.dev/mailfountain/runtime/store"
)

// countingDirectory counts the address lookups of the server.
type countingDirectory struct {
	Directory
	lookups atomic.Int64
}

func (d *countingDirectory) LookupAddress(ctx context.Context, local, domain string) (*store.Address, error) {
	d.lookups.Add(1)
	return d.Directory.LookupAddress(ctx, local, domain)
}

// A recipient given again in a transaction is looked up once; the next
// transaction looks it up again, so that directory changes apply at once.
func TestLookupOncePerTransaction(t *testing.T) {
	var dir *countingDirectory
	e := newEnv(t, func(c *Config) {
		dir = &countingDirectory{Directory: c.Directory}
		c.Directory = dir
	})
	c := e.client(e.mx, plain)
	tests := []struct {
		name        string
		rcpts       []string
		wantLookups int64
		wantAlice   int // messages in alice's inbox after the transaction
	}{
		{"once", []string{"alice@example.test"}, 1, 1},
		{"same address thrice", []string{"alice@example.test", "ALICE@example.test", "alice@EXAMPLE.test"}, 1, 2},
		{"alias and account", []string{"boss@example.test", "alice@example.test", "boss@example.test"}, 2, 3},
		{"next transaction looks up again", []string{"alice@example.test"}, 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dir.lookups.Load()
			if err := send(c, "someone@remote.test", tt.rcpts, testMessage(tt.name)); err != nil {
				t.Fatal(err)
			}
			if got := dir.lookups.Load() - before; got != tt.wantLookups {
				t.Errorf("%d lookups, want %d", got, tt.wantLookups)
			}
			e.wantMailbox("example.test", "alice", tt.wantAlice)
		})
	}

	// An account added between two transactions of one connection is
	// known to the second.
	err := send(c, "someone@remote.test", []string{"erin@example.test"}, testMessage("before"))
	wantCode(t, err, 550, "5.1.1")
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	_, err = e.st.UpdateDirectory(context.Background(), func(tx *store.DirectoryTx) error {
		return errors.Join(tx.PutAccount(context.Background(), store.Account{Domain: "example.test", ID: "erin", Name: "Erin"}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, "someone@remote.test", []string{"erin@example.test"}, testMessage("after")); err != nil {
		t.Fatalf("after the account was added: %v", err)
	}
	e.wantMailbox("example.test", "erin", 1)
}
