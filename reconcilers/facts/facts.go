// Package facts declares the facts that reconcilers publish and read, so
// that a reader and its publisher share a typed key without importing
// each other. A fact has one publisher, named here; its readers apply
// after it (the engine derives the order) and are planned again when it
// moves during an apply.
//
// The mail reconciler publishes DKIMKeys; the network reconciler, which
// will publish the others, and the DNS and DHCP reconcilers that will
// read them are to come (issue 9). Each key names its type and its
// publisher; a reconciler can read it only once that publisher publishes
// it (the engine refuses a fact with no publisher).
package facts

import (
	"net/netip"

	"mailfountain.dev/mailfountain/reconcilers"
)

// The keys are values, never assigned after initialisation.
var (
	// PublicAddress is the box's public address, as the WAN link got it
	// (static, DHCP, PPPoE); the DNS zone's A record. Publisher: network.
	PublicAddress = reconcilers.NewFact[netip.Addr]("public-address")
	// LANAddress is the box's address on its LAN, with the LAN's prefix;
	// what the DHCP server hands out as gateway and resolver. Publisher:
	// network.
	LANAddress = reconcilers.NewFact[netip.Prefix]("lan-address")
	// UpstreamResolvers are the resolvers the WAN link was given, that the
	// DNS server forwards to. Publisher: network.
	UpstreamResolvers = reconcilers.NewFact[[]netip.Addr]("upstream-resolvers")
	// DKIMKeys are the DKIM public keys the DNS zones publish, by record
	// name ("mf20261204e._domainkey.ma-societe.fr") to TXT value
	// ("v=DKIM1; k=ed25519; p=…"): those of every domain with keys on
	// disk, a domain no longer in the document included (a reader keeps
	// those of its zones). Publisher: mail.
	DKIMKeys = reconcilers.NewFact[map[string]string]("dkim-keys")
)
