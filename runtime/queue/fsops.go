package queue

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// The file operations of the per-message paths (Enqueue, a delivery),
// one system call each. os.OpenFile tries to register every file it
// opens with the runtime's poller, which epoll refuses for a regular
// file: four fcntl and an epoll_ctl more per open; os.Rename lstats its
// target first, os.Remove tries rmdir after unlink. A message costs
// several opens, a rename and removals, on 2 shared cores.

// openFile opens a regular file of the queue, outside the poller (a
// file's reads and writes block the thread either way).
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, perm)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// rename renames a message file (never onto a directory).
func rename(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// removeFile removes a file (never a directory).
func removeFile(path string) error {
	if err := unix.Unlink(path); err != nil {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// link makes the hard link to, replacing a file there.
func link(from, to string) error {
	err := unix.Link(from, to)
	if errors.Is(err, unix.EEXIST) {
		unix.Unlink(to)
		err = unix.Link(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: from, New: to, Err: err}
	}
	return nil
}
