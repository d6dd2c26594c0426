package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel's side: what the reconciler reads with requests of its own
// (the ruleset's generation, the rules of its table with only what it
// compares: chain, handle, comment) and what it sends through
// google/nftables, one batch per apply. Everything happens in the
// network namespace of the calling thread: the box's (the daemon runs
// inside it, package hw).

// LiveRule is a rule found in the table.
type LiveRule struct {
	Chain  string
	Handle uint64
	// Key is its comment; a rule without MailFountain's prefix was not
	// made by MailFountain.
	Key string
}

// nfgen is the nfgenmsg header of nftables' netlink messages.
func nfgen(family nftables.TableFamily) []byte {
	return []byte{byte(family), unix.NFNETLINK_V0, 0, 0}
}

func nftMsg(msg uint16) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// dial opens a netfilter netlink socket in the current namespace.
func dial() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open a netfilter netlink socket: %w", err)
	}
	return c, nil
}

// readGen reads the ruleset's generation: the kernel counts every
// committed transaction of the namespace, so an unchanged generation is
// an unchanged ruleset (ours and every other table).
func readGen(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftMsg(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(nftables.TableFamilyUnspecified),
	})
	if err != nil {
		return 0, fmt.Errorf("read the nftables generation: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != nftMsg(unix.NFT_MSG_NEWGEN) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("read the nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("read the nftables generation: %w", err)
		}
	}
	return 0, errors.New("read the nftables generation: no generation in the answer")
}

// dumpRules lists the rules of our table: chain, handle and comment, the
// expressions left unparsed. exists is false when there is no table.
func dumpRules(c *netlink.Conn) (rules []LiveRule, exists bool, err error) {
	// A listing of a table that does not exist is empty, not an error:
	// the table is asked for first.
	tattrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: append([]byte(TableName), 0)},
	}) // a fixed string attribute: cannot fail
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftMsg(unix.NFT_MSG_GETTABLE), Flags: netlink.Request},
		Data:   append(nfgen(TableFamily), tattrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("look for table %s: %w", TableName, err)
	}
	attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(TableName), 0)},
	}) // a fixed string attribute: cannot fail
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftMsg(unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append(nfgen(TableFamily), attrs...),
	})
	if err != nil {
		return nil, false, fmt.Errorf("list the rules of table %s: %w", TableName, err)
	}
	for _, m := range msgs {
		if m.Header.Type != nftMsg(unix.NFT_MSG_NEWRULE) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, false, fmt.Errorf("list the rules of table %s: %w", TableName, err)
		}
		ad.ByteOrder = binary.BigEndian
		var r LiveRule
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_CHAIN:
				r.Chain = ad.String()
			case unix.NFTA_RULE_HANDLE:
				r.Handle = ad.Uint64()
			case unix.NFTA_RULE_USERDATA:
				r.Key = keyOf(ad.Bytes())
			}
		}
		if err := ad.Err(); err != nil {
			return nil, false, fmt.Errorf("list the rules of table %s: %w", TableName, err)
		}
		rules = append(rules, r)
	}
	return rules, true, nil
}

// listChains lists the chains of our table.
func listChains() ([]Chain, error) {
	cc, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("list the chains of table %s: %w", TableName, err)
	}
	all, err := cc.ListChainsOfTableFamily(TableFamily)
	if err != nil {
		return nil, fmt.Errorf("list the chains of table %s: %w", TableName, err)
	}
	var out []Chain
	for _, c := range all {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		ch := Chain{Name: c.Name, Type: c.Type, Policy: nftables.ChainPolicyAccept}
		if c.Hooknum != nil {
			ch.Hook = *c.Hooknum
		}
		if c.Priority != nil {
			ch.Priority = *c.Priority
		}
		if c.Policy != nil {
			ch.Policy = *c.Policy
		}
		out = append(out, ch)
	}
	return out, nil
}

// batch is what one apply sends: the table rebuilt whole, or rules
// deleted and added.
type batch struct {
	reload *Ruleset
	del    []LiveRule
	add    []*Rule
}

// messages is the number of netlink messages the batch holds.
func (b *batch) messages() int {
	if b.reload != nil {
		return 3 + len(b.reload.Chains) + len(b.reload.Rules)
	}
	return len(b.del) + len(b.add)
}

// bufSize is the netlink socket's buffers for a batch: it is sent in one
// sendmsg (which the send buffer must hold: about 300 bytes a rule), and
// the kernel acknowledges each of its messages at the commit, where an
// ack that finds the receive buffer full is lost (ENOBUFS): about 1 KiB
// an ack. With room.
func bufSize(msgs int) int { return max(1<<20, msgs*2048) }

// send commits b as one transaction.
func send(b *batch) error {
	if b.messages() == 0 {
		return nil
	}
	size := bufSize(b.messages() + 2)
	cc, err := nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		return forceBuffers(c, size)
	}))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	table := &nftables.Table{Name: TableName, Family: TableFamily}
	chains := map[string]*nftables.Chain{}
	chain := func(name string) *nftables.Chain {
		if c, ok := chains[name]; ok {
			return c
		}
		c := &nftables.Chain{Name: name, Table: table}
		chains[name] = c
		return c
	}
	if b.reload != nil {
		// Added first, so that the delete finds it; deleted, so that
		// nothing of the old table is left; made again whole. The kernel
		// commits the three together or nothing.
		cc.AddTable(table)
		cc.DelTable(table)
		cc.AddTable(table)
		for _, c := range b.reload.Chains {
			hook, prio, policy := c.Hook, c.Priority, c.Policy
			chains[c.Name] = cc.AddChain(&nftables.Chain{
				Name: c.Name, Table: table, Type: c.Type,
				Hooknum: &hook, Priority: &prio, Policy: &policy,
			})
		}
		for _, r := range b.reload.Rules {
			cc.AddRule(&nftables.Rule{Table: table, Chain: chain(r.Chain), Exprs: r.Exprs, UserData: userData(r.Key)})
		}
	} else {
		for _, r := range b.del {
			if err := cc.DelRule(&nftables.Rule{Table: table, Chain: chain(r.Chain), Handle: r.Handle}); err != nil {
				return fmt.Errorf("delete rule %d of chain %s: %w", r.Handle, r.Chain, err)
			}
		}
		for _, r := range b.add {
			cc.AddRule(&nftables.Rule{Table: table, Chain: chain(r.Chain), Exprs: r.Exprs, UserData: userData(r.Key)})
		}
	}
	if err := cc.Flush(); err != nil {
		return fmt.Errorf("commit table %s (%d messages): %w", TableName, b.messages(), err)
	}
	return nil
}

// forceBuffers sets the socket's send and receive buffers to size,
// beyond wmem_max and rmem_max when it may (SO_SNDBUFFORCE and
// SO_RCVBUFFORCE need CAP_NET_ADMIN, which changing nftables needs too),
// else as far as the maxima allow.
func forceBuffers(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size))
	}); err != nil {
		return err
	}
	if errors.Is(serr, syscall.EPERM) {
		return errors.Join(c.SetWriteBuffer(size), c.SetReadBuffer(size))
	}
	if serr != nil {
		return fmt.Errorf("size the netlink socket's buffers: %w", serr)
	}
	return nil
}
