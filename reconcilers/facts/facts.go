// Package facts declares the facts that reconcilers publish and read, so
// that a reader and its publisher share a typed key without importing
// each other. A fact has one publisher, named here; its readers apply
// after it (the engine derives the order) and are planned again when it
// moves during an apply.
//
// The mail reconciler publishes DKIMKeys, the network reconciler the
// others; the DNS reconciler reads them all, the DHCP reconciler
// LANAddress. Each key names its type and its
// publisher; a reconciler can read it only once that publisher publishes
// it (the engine refuses a fact with no publisher).
package facts

import (
	"net/netip"

	"mailfountain.dev/mailfountain/reconcilers"
)

// The keys are values, never assigned after initialisation.
var (
	// PublicAddress is the box's public address: network.public_address,
	// else the source address of the host's default route (IPv4
	// preferred; invalid when the host has none); the DNS zones' A or
	// AAAA record. The address the WAN link got (DHCP, PPPoE) will come
	// between the two with issue 12. Publisher: network.
	PublicAddress = reconcilers.NewFact[netip.Addr]("public-address")
	// LANAddress is the box's address on its LAN, with the LAN's prefix
	// (network.lan.address/24, manual 6.2.1.2); invalid in server mode.
	// The DNS server's LAN view; what the DHCP server hands out as
	// router and DNS server. Publisher: network.
	LANAddress = reconcilers.NewFact[netip.Prefix]("lan-address")
	// UpstreamResolvers are the resolvers the DNS server forwards the
	// LAN's queries to: the static WAN's (network.wan.dns), else those of
	// the host's /etc/resolv.conf. Publisher: network.
	UpstreamResolvers = reconcilers.NewFact[[]netip.Addr]("upstream-resolvers")
	// DKIMKeys are the DKIM public keys the DNS zones publish, by record
	// name ("mf20261204e._domainkey.ma-societe.fr") to TXT value
	// ("v=DKIM1; k=ed25519; p=…"): those of every domain with keys on
	// disk, a domain no longer in the document included (a reader keeps
	// those of its zones). Publisher: mail.
	DKIMKeys = reconcilers.NewFact[map[string]string]("dkim-keys")
)
