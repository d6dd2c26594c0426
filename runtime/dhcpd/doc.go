// Package dhcpd is the box's DHCP server on its LAN (router mode): the
// server side of RFC 2131 (DISCOVER → OFFER, REQUEST → ACK or NAK,
// RELEASE, DECLINE, INFORM) with the options of RFC 2132 a LAN's devices
// need: subnet mask, router and DNS server (the box's LAN address, also
// the server identifier), broadcast address, lease time with its renewal
// and rebinding times, domain name, and a reserved device's host name.
// The messages are read and written with github.com/insomniacslk/dhcp's
// dhcpv4; the socket loop and the allocation are its own.
//
// What it owns:
//
//   - The allocation of addresses (pool.go): a device's reservation;
//     else its current or previous address; else the address it asks
//     for when free; else the first address of the range never leased;
//     else the lease expired the longest ago (expired leases are reused
//     last). An offer holds its address for 30 s, but when the range
//     has nothing else an address offered to another device is offered
//     again, so a flood of DISCOVERs cannot exhaust it. An address a
//     device declines (found in use) is held back 10 minutes.
//   - The leases, by MAC, kept whole in Dir/leases.json (runtime/safeio:
//     a temporary file, fsync, rename) before the ACK that grants one is
//     sent: a restart forgets no lease a device holds; a lease that
//     cannot be written is not granted (no answer, the device asks
//     again). A file rather than the store: it changes at the pace of
//     the devices, not of the document, and holds at most a /24.
//   - Its limits: one request at a time, read into a fixed buffer; at
//     most 12 requests per MAC and 600 in all per 10 s window, the rest
//     dropped; at most one lease and one offer per address of the LAN.
//     Whatever a hostile client sends, memory stays bounded (FuzzHandle
//     checks it) and nothing else is written.
//
// What it answers: requests of Ethernet devices (htype 1, a unicast MAC)
// sent on the LAN itself; relayed requests (giaddr set) are not its own.
// Replies to a device without an address (ciaddr 0) are broadcast, as RFC
// 2131 4.1 allows: a UDP socket cannot write the ARP entry a unicast to
// the offered address would need. NAKs are broadcast; ACKs of renewals
// and INFORMs go to ciaddr. A REQUEST for an address of another network,
// another device's, or outside the range is NAKed; one naming another
// server identifier drops our offer, silently. Nothing is answered
// before the first Config is published, nor while it is not Enabled.
//
// What it leaves to its caller: the Config, which the DHCP reconciler
// derives from the document and publishes on a Live; the socket,
// UDP port 67 bound to the LAN bridge (SO_BINDTODEVICE; the supervisor's
// Endpoint.Device), which ServePacket reads until its context ends; and
// Run, a daemon component that follows the Config and the metrics'
// gauges. The server never reads the document.
package dhcpd
