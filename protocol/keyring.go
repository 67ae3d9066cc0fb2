package protocol

import (
	"encoding/binary"
	"slices"
)

// VersionKeyRing is the first version with the keyword ring: the keys of
// every supernode's index (the 64-bit hashes of its terms and content IDs)
// are kept by the supernodes that follow them on the ring of supernode IDs,
// and a query asks those keepers which supernodes hold its keys.
const VersionKeyRing uint16 = 10

// Bounds of the keyword ring.
const (
	MaxTermBatches = 1024 // batches in one term_puts message
	MaxTermKeys    = 4096 // keys added or removed in one batch
	MaxLookupKeys  = 64   // keys one term_lookup asks for
	MaxTermHolders = 256  // holders one list names
	MaxTermHops    = 32   // supernode hops a batch may take to its keeper
	MaxTermThen    = 7    // keepers a batch is passed on to after To
)

// TermBatch is what one supernode (the publisher) changed in the keys it
// holds, for one of the supernodes that keep them (To). It travels hop by hop
// over supernode links toward To, Hops counting down. Supernodes are named
// by their ID prefix, which the member list resolves: a batch is mostly its
// names, and most carry a key or two.
type TermBatch struct {
	To        uint64 `msgpack:"t"`
	Publisher uint64 `msgpack:"p"`
	// Inc is the publisher's incarnation: a keeper that sees a later one
	// drops what the earlier one put.
	Inc  uint64 `msgpack:"i"`
	Hops uint8  `msgpack:"h"`
	// Then are the keepers, by ID prefix, that To passes the batch on to,
	// each to the next, as the publisher sees them: a change goes round
	// the ring once, to the first of a key's keepers, and from there a
	// step to each of the others.
	Then KeyList `msgpack:"n,omitempty"`
	Add  KeyList `msgpack:"a,omitempty"`
	Del  KeyList `msgpack:"d,omitempty"`
}

func (b *TermBatch) wireCheck() error {
	if b.To == 0 || b.Publisher == 0 {
		return invalid("term batch without a keeper or a publisher")
	}
	return nil
}

func (b *TermBatch) check() error {
	if err := b.wireCheck(); err != nil {
		return err
	}
	switch {
	case b.Hops > MaxTermHops:
		return invalid("term batch with %d hops left (max %d)", b.Hops, MaxTermHops)
	case len(b.Then) > MaxTermThen:
		return invalid("term batch passed on to %d keepers (max %d)", len(b.Then), MaxTermThen)
	case slices.Contains(b.Then, 0):
		return invalid("term batch passed on to the zero prefix")
	case len(b.Add)+len(b.Del) == 0:
		return invalid("empty term batch")
	case len(b.Add) > MaxTermKeys || len(b.Del) > MaxTermKeys:
		return invalid("term batch of %d+%d keys (max %d each)", len(b.Add), len(b.Del), MaxTermKeys)
	}
	return nil
}

// KeyList is a list of 64-bit keys, capped at MaxTermKeys when decoded.
type KeyList []uint64

// TermPuts carries term batches between linked supernodes (v10).
type TermPuts struct {
	Batches []TermBatch `msgpack:"b"`
}

// TermLookup asks a keeper which supernodes hold each of Keys, for query
// ID (v10).
type TermLookup struct {
	ID   QueryID `msgpack:"q"`
	Keys KeyList `msgpack:"k"`
}

// HolderList is the supernodes a keeper knows to hold Key, by ID prefix:
// all of them, or with More a sample of MaxTermHolders.
type HolderList struct {
	Key     uint64  `msgpack:"k"`
	Holders KeyList `msgpack:"h,omitempty"`
	More    bool    `msgpack:"m,omitempty"`
}

// IDPrefix is the first 8 bytes of a peer ID, which names a supernode in
// term messages. Finding a key whose prefix is another's takes about 2^64
// tries.
func IDPrefix(p PeerID) uint64 { return binary.BigEndian.Uint64(p[:8]) }

// TermHolders answers a TermLookup with a list for each key asked (v10).
type TermHolders struct {
	ID    QueryID      `msgpack:"q"`
	Lists []HolderList `msgpack:"l"`
}

func (*TermPuts) Type() MsgType    { return TypeTermPuts }
func (*TermLookup) Type() MsgType  { return TypeTermLookup }
func (*TermHolders) Type() MsgType { return TypeTermHolders }

func (m *TermPuts) validate() error {
	if len(m.Batches) > MaxTermBatches {
		return invalid("%d term batches (max %d)", len(m.Batches), MaxTermBatches)
	}
	for i := range m.Batches {
		if err := m.Batches[i].check(); err != nil {
			return err
		}
	}
	return nil
}

func (m *TermLookup) validate() error {
	if len(m.Keys) == 0 || len(m.Keys) > MaxLookupKeys {
		return invalid("term lookup of %d keys (1 to %d)", len(m.Keys), MaxLookupKeys)
	}
	return nil
}

func (m *TermHolders) validate() error {
	if len(m.Lists) > MaxLookupKeys {
		return invalid("%d holder lists (max %d)", len(m.Lists), MaxLookupKeys)
	}
	for _, l := range m.Lists {
		if len(l.Holders) > MaxTermHolders {
			return invalid("%d holders of one key (max %d)", len(l.Holders), MaxTermHolders)
		}
		for _, p := range l.Holders {
			if p == 0 {
				return invalid("the zero prefix as a holder")
			}
		}
	}
	return nil
}
