// Package pppoe is the box's PPPoE WAN link (network.wan.method pppoe):
// pppd with its rp-pppoe plugin, configured from the document's
// credentials, supervised, its session's addresses handed on as a
// wanlink.State (down, it says why pppd exited and when it runs again).
//
// It owns pppd's files in its directory (DATA/pppoe: the options, the
// password in a file of its own, mode 0600, never on the command line; the
// ip-up and ip-down scripts), running pppd (nodetach) and starting it
// again when it exits, after a jittered, capped, doubling backoff that a
// lasting session resets, and stopping it (SIGTERM, then SIGKILL) when
// its context ends. The session's address, peer and DNS servers come from
// the ip-up script, which appends a line to a file that Run watches
// (inotify): the script is the only place pppd gives the DNS servers of
// usepeerdns (DNS1, DNS2), and it carries pppd's PID, so that a late
// script of a pppd that exited is not taken for the running one's.
// Discover runs the PPPoE discovery stage alone (rp-pppoe's pppoe -A) to
// tell whether any access concentrator answers on the WAN port.
//
// It implements nothing of RFC 2516 (PPPoE) or RFC 1661/1332 (PPP, IPCP)
// itself: pppd, its plugin and rp-pppoe's client do. It leaves to its
// caller (the network reconciler) which link runs, what the State is
// turned into (routes, facts: the box's public address, the upstream
// resolvers), and the firewall. It never reads the document: the caller
// fills Config.
//
// The README beside this file says what the tests prove on a kernel
// without PPP and what only a kernel with PPP can show.
package pppoe
