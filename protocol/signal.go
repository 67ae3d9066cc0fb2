package protocol

import "fmt"

// NATType is how a node's NAT maps its socket to public addresses, as the node
// measured it with STUN and its supernode confirmed by dialling back.
type NATType uint8

const (
	NATUnknown             NATType = 0
	NATNone                NATType = 1 // reachable at its address: no NAT, or one that lets anyone in
	NATEndpointIndependent NATType = 2 // one public address for every destination: can punch
	NATEndpointDependent   NATType = 3 // a new public address per destination (symmetric)
	NATUDPBlocked          NATType = 4 // no UDP out; reaches the overlay through a relay over TCP
)

func (n NATType) String() string {
	switch n {
	case NATUnknown:
		return "unknown"
	case NATNone:
		return "public"
	case NATEndpointIndependent:
		return "endpoint-independent"
	case NATEndpointDependent:
		return "symmetric"
	case NATUDPBlocked:
		return "udp-blocked"
	}
	return fmt.Sprintf("nat_%d", uint8(n))
}

// NATReport tells a leaf's supernode what the leaf measured: its mapping type and
// the reflexive addresses STUN showed. The supernode answers with NATStatus after
// dialling the leaf back.
type NATReport struct {
	Mapping   NATType  `msgpack:"m"`
	Reflexive AddrList `msgpack:"r,omitempty"`
	// Proofs are the leaf's addresses in the IP family it did not attach
	// over, each with the token the supernode's STUN answer carried there
	// (v12; see Address proofs).
	Proofs ProofList `msgpack:"pf,omitempty"`
}

// AddrProof shows that a leaf receives at Addr: Token came in a STUN answer
// sent there.
type AddrProof struct {
	Addr  string   `msgpack:"a"`
	Token [16]byte `msgpack:"t"`
}

// ProofList is a NATReport's proofs, capped at MaxProofs as it decodes.
type ProofList []AddrProof

// MaxProofs bounds a NATReport's proofs: an address per family is all a
// leaf has to show.
const MaxProofs = 2

func (p *AddrProof) wireCheck() error {
	if p.Addr == "" {
		return invalid("proof without an address")
	}
	return nil
}

// NATStatus is the supernode's verdict on a leaf: Public when a dial back to the
// leaf's observed address from another socket succeeded.
type NATStatus struct {
	NAT      NATType `msgpack:"n"`
	Public   bool    `msgpack:"p,omitempty"`
	Observed string  `msgpack:"o,omitempty"`
	// Proven are the addresses of the report's proofs the supernode took
	// and lists the leaf with (v12).
	Proven AddrList `msgpack:"pv,omitempty"`
}

// SignalKind is the step of a connection setup a Signal carries.
type SignalKind uint8

const (
	SignalRequest SignalKind = 1 // initiator -> target's supernode: connect me
	SignalOffer   SignalKind = 2 // target's supernode -> target: the initiator, the plan
	SignalAnswer  SignalKind = 3 // target's supernode -> initiator: the target, the plan
	SignalRelayed SignalKind = 4 // target -> initiator: dial me at this relayed address
	SignalFail    SignalKind = 5 // the setup failed; Code and Message say why
)

func (k SignalKind) String() string {
	switch k {
	case SignalRequest:
		return "request"
	case SignalOffer:
		return "offer"
	case SignalAnswer:
		return "answer"
	case SignalRelayed:
		return "relayed"
	case SignalFail:
		return "fail"
	}
	return fmt.Sprintf("signal_%d", uint8(k))
}

// Plan is how two peers get a connection, chosen by the target's supernode from
// both NAT types.
type Plan uint8

const (
	PlanDirect  Plan = 1 // the initiator dials the target
	PlanReverse Plan = 2 // the target dials the initiator
	PlanPunch   Plan = 3 // both punch at the same moment; the initiator dials
	PlanRelay   Plan = 4 // the target allocates a relay; the initiator dials it there
	// PlanRelayReverse: the initiator allocates a relay and the target dials
	// it there, for a target on IPv6 alone, which reaches no relay's TURN
	// service to allocate on (v12).
	PlanRelayReverse Plan = 5
)

func (p Plan) String() string {
	switch p {
	case PlanDirect:
		return "direct"
	case PlanReverse:
		return "reverse"
	case PlanPunch:
		return "punch"
	case PlanRelay:
		return "relay"
	case PlanRelayReverse:
		return "relay-reverse"
	}
	return fmt.Sprintf("plan_%d", uint8(p))
}

// RelayCreds are TURN credentials a supernode minted for one peer (the TURN REST
// form: the username holds the expiry and the peer ID, the password is an HMAC
// over it with the secret the supernodes and relays share).
type RelayCreds struct {
	UDP      string `msgpack:"u,omitempty"` // TURN over UDP, host:port
	TCP      string `msgpack:"t,omitempty"` // TURN over TCP, host:port
	Username string `msgpack:"n"`
	Password string `msgpack:"p"`
	Expires  int64  `msgpack:"e"` // unix seconds
	// IPv6 asks the holder to allocate an IPv6 relayed address: the peer
	// that will send to it has IPv6 alone (v12).
	IPv6 bool `msgpack:"6,omitempty"`
}

// Signal carries one step of setting up a connection between two peers through
// their supernodes. Supernodes route it to To: to their own leaf, to ToSN when it
// is a neighbour, else on to their neighbours while Hops last.
type Signal struct {
	ID     uint64     `msgpack:"i"`
	Kind   SignalKind `msgpack:"k"`
	From   PeerID     `msgpack:"f"`
	FromSN PeerID     `msgpack:"fs"`
	To     PeerID     `msgpack:"t"`
	ToSN   PeerID     `msgpack:"ts"`
	Hops   uint8      `msgpack:"h,omitempty"`
	NAT    NATType    `msgpack:"nt,omitempty"` // of From
	Addrs  AddrList   `msgpack:"a,omitempty"`  // From's candidate addresses
	Plan   Plan       `msgpack:"pl,omitempty"`
	// Delay is how long the receiver waits, in milliseconds, before it starts,
	// so both sides punch at the same moment.
	Delay uint32 `msgpack:"d,omitempty"`
	// Upgrade asks only for a direct path, for a pair already talking via a relay.
	Upgrade bool        `msgpack:"u,omitempty"`
	Relay   *RelayCreds `msgpack:"r,omitempty"`
	Code    Status      `msgpack:"c,omitempty"`
	Message string      `msgpack:"m,omitempty"`
}

// RelayLoad is a relay's report of itself to a supernode.
type RelayLoad struct {
	UDP         string  `msgpack:"u,omitempty"`
	TCP         string  `msgpack:"t,omitempty"`
	Allocations uint32  `msgpack:"a"`
	Capacity    uint32  `msgpack:"c"`
	Rate        float64 `msgpack:"r"` // bytes relayed per second, recently
	// IPv6 is the address IPv6 relayed addresses are on, when the relay
	// offers them (v12).
	IPv6 string `msgpack:"6,omitempty"`
}

// RelayAsk asks a supernode for relay credentials. A peer whose network drops
// UDP sends it over the supernode's TCP port, then reaches the overlay through
// the relay.
type RelayAsk struct{}

// RelayOK answers RelayAsk.
type RelayOK struct {
	Relay    RelayCreds `msgpack:"r"`
	Observed string     `msgpack:"o,omitempty"`
}

func (*NATReport) Type() MsgType { return TypeNATReport }
func (*NATStatus) Type() MsgType { return TypeNATStatus }
func (*Signal) Type() MsgType    { return TypeSignal }
func (*RelayLoad) Type() MsgType { return TypeRelayLoad }
func (*RelayAsk) Type() MsgType  { return TypeRelayAsk }
func (*RelayOK) Type() MsgType   { return TypeRelayOK }

func (m *NATReport) validate() error {
	if err := checkAddrs(m.Reflexive); err != nil {
		return err
	}
	if len(m.Proofs) > MaxProofs {
		return invalid("%d address proofs (max %d)", len(m.Proofs), MaxProofs)
	}
	for i := range m.Proofs {
		if err := m.Proofs[i].wireCheck(); err != nil {
			return err
		}
		if err := checkStr("proven address", m.Proofs[i].Addr, MaxAddrLen); err != nil {
			return err
		}
	}
	return nil
}

func (m *NATStatus) validate() error {
	if err := checkStr("observed address", m.Observed, MaxAddrLen); err != nil {
		return err
	}
	return checkAddrs(m.Proven)
}

func (c *RelayCreds) validate() error {
	for _, s := range []string{c.UDP, c.TCP} {
		if err := checkStr("relay address", s, MaxAddrLen); err != nil {
			return err
		}
	}
	if err := checkStr("relay username", c.Username, 256); err != nil {
		return err
	}
	return checkStr("relay password", c.Password, 256)
}

func (m *Signal) validate() error {
	if m.Kind < SignalRequest || m.Kind > SignalFail {
		return invalid("signal kind %d", m.Kind)
	}
	if m.Hops > MaxHops {
		return invalid("signal hops %d (max %d)", m.Hops, MaxHops)
	}
	if err := checkAddrs(m.Addrs); err != nil {
		return err
	}
	if m.Relay != nil {
		if err := m.Relay.validate(); err != nil {
			return err
		}
	}
	return checkStr("message", m.Message, 1024)
}

func (m *RelayLoad) validate() error {
	if m.Rate < 0 || m.Rate != m.Rate {
		return invalid("relay rate %v", m.Rate)
	}
	for _, a := range []string{m.UDP, m.TCP, m.IPv6} {
		if err := checkStr("relay address", a, MaxAddrLen); err != nil {
			return err
		}
	}
	return nil
}

func (m *RelayAsk) validate() error { return nil }
func (m *RelayOK) validate() error {
	if err := checkStr("observed address", m.Observed, MaxAddrLen); err != nil {
		return err
	}
	return m.Relay.validate()
}
