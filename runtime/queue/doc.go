// Package queue is the outbound queue: mail for addresses outside the
// box waits here, on disk, until smtpout delivers it, it expires or an
// administrator deletes it. It owns the queue directory, the schedule of
// attempts (RFC 5321 section 4.5.4.1: retry, give up after a lifetime),
// the bounces and delay warnings (built by runtime/dsn, RFC 3464, handed
// to a Notifier) and the record of what was delivered. It leaves to its
// callers how a message is sent (smtpout.Sender), how a report reaches
// its sender (Notifier), the DKIM fields (Signer) and SRS.
//
// # On disk
//
// One file per message, written whole by Enqueue in tmp/, fsync'd, then
// renamed into sched/<due Unix second>/<id> and the directory fsync'd
// before Enqueue returns. Directory fsyncs are shared (group commit):
// Enqueues that wait on the same directory at once return after one
// fsync of it that started after their rename (or key link), which
// covers every entry made before it; under load one fsync of the bucket
// and one of keys/ serve many messages. A file left in tmp/ by a crash was never
// acknowledged: Open removes it. Ids are the arrival time in hex
// nanoseconds, so names sort in arrival order. The file holds the
// envelope, one status byte per recipient, the data, the DKIM fields
// sent before the data, and the state records appended at each deferral
// (attempts, last answer, backoff step), each with its CRC so that a
// record torn by a crash is ignored (see file.go for the layout). With a
// Key, keys/<hash> is a hard link to the message file (no inode of its
// own: inodes are what file creation costs most), whose created time is
// its id: an Enqueue of the same key finds the message and adds nothing;
// keys/ is fsync'd too before Enqueue returns.
// Open removes the keys whose message is gone.
//
// The directory is the schedule: sched/ has one directory per second in
// which something is due, held messages are in hold/, which the
// scheduler never reads. A deferral appends the record, fdatasyncs, and
// renames the file into the bucket of its next attempt; that rename is
// not fsync'd: lost in a crash, the message is only tried early.
//
// # The record of a delivery, and the one window
//
// When a remote server accepts a recipient, the queue overwrites that
// recipient's status byte in place (one pwrite of one byte) and then
// fdatasyncs the file, as Postfix marks recipients done in its queue
// files. A one-byte write cannot be torn. The only window in which a
// recipient can be sent twice is between the remote's 250 and that
// pwrite (the fdatasync that follows, for a power loss rather than a
// crash of the process): a crash there leaves the recipient pending and
// the next start sends it again. A crash anywhere else sends nothing
// twice. An append to a shared journal with group commit would cost
// fewer fsyncs under load; the byte in place was chosen because it keeps
// each message's state in its one file (no journal to replay, admin
// commands work on files), and a message's recipients to one domain are
// recorded with one fdatasync.
//
// A bounce is handed to the Notifier with the key <id>/failed/<recipient
// indexes> before the recipients are marked bounced: a crash in between
// hands the same report with the same key again, and the Notifier drops
// it. The same holds for delay warnings (<id>/delayed/...).
//
// # Memory
//
// Run keeps at most Config.MaxActive messages in memory (their envelope
// and state, never their data), refilled from the due buckets oldest
// first; the rest stay on disk. List reads one message at a time.
//
// # Scheduling
//
// The pending recipients of a message are grouped by destination domain
// and reverse path (Forward recipients go with the SRS form of From), one
// smtpout.Message per group. At most PerDomain sends run to one
// destination and MaxConcurrent in all, destinations served in turn, so
// that a slow or refusing one does not stall the others; nor does it fill
// the active set: when a quarter of the set waits for one destination,
// its further messages are postponed (deferred for MinBackoff, no attempt
// counted), and a destination that answered none of five sends in a row
// (timeouts, refused connections) is suspended for MinBackoff, its
// waiting messages postponed, as Postfix does with a dead destination. A
// 250 is
// recorded; a permanent refusal bounces at the end of the round; a
// temporary one is retried after a backoff from MinBackoff doubling up to
// MaxBackoff, ±20%; a recipient still refused after Lifetime bounces. A
// recipient whose destination refused the box's address (Result.Blocked)
// is retried at once through the smarthost when Settings.Relay, and keeps
// that route (Recipient.ViaRelay). A delay warning goes once per
// recipient after DelayWarning.
//
// # Admin
//
// List, Show, Hold, Release, Retry and Delete work on the files, with or
// without Run. On a message being sent, Hold and Delete set a flag in
// its file (durable at once) and take effect when its round ends. One
// process at a time opens a queue (a lock on its directory; ErrBusy for
// the second): while the daemon runs, mfapply reaches the queue through
// the control socket.
package queue
