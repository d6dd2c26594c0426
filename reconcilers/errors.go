package reconcilers

import (
	"errors"
	"time"
)

// TransientError marks a failure that may pass on its own (a busy
// resource, a timeout): the engine tries the reconciler again, with
// backoff, without rolling back those already applied. Any other error is
// terminal: the engine rolls back at once.
type TransientError struct {
	Err error
}

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err, or an error it wraps, was marked with
// Transient.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// Backoff is how the engine retries a reconciler whose Apply failed with a
// transient error.
type Backoff struct {
	// Attempts bounds the Apply attempts of one reconciler in one apply,
	// the first included; once spent, the failure is handled as terminal.
	Attempts int
	// Initial is the wait before the second attempt; it doubles after
	// each attempt, up to Max.
	Initial, Max time.Duration
}

// The engine's Backoff when its Config gives none: five attempts within
// about three seconds, short enough to hold the apply lock.
const (
	DefaultAttempts       = 5
	DefaultBackoffInitial = 200 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
)

// wait is the wait before attempt n+1, after n attempts.
func (b Backoff) wait(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
