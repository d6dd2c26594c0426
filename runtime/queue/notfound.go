package queue

import "errors"

// ErrNotFound is returned (wrapped) by the admin methods (Show, Hold,
// Release, Retry, Delete) for an id that names no queued message.
//
// Declared here for the admin side (runtime/control, cmd/mfapply), built
// in parallel with the queue itself: the queue's branch declares the same
// variable (PLAN10). Keep one of the two when merging.
var ErrNotFound = errors.New("no such message in the queue")
