package control

import (
	"fmt"
	"net"
	"syscall"
)

// peerCred returns the uid and pid of the process at the other end of c,
// as the kernel recorded them when it connected.
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, -1, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, -1, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return -1, -1, fmt.Errorf("peer credentials: %w", credErr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
