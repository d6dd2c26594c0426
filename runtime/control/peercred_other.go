//go:build !linux

package control

import (
	"errors"
	"net"
)

// peerCred is Linux-only (SO_PEERCRED); elsewhere every peer is refused.
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	return -1, -1, errors.New("peer credentials are not supported on this system")
}
