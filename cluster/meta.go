package cluster

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// metaMaxSize is memberlist's limit on a node's metadata
// (memberlist.MetaMaxSize).
const metaMaxSize = 512

// metaVersion is the first byte of every encoded nodeMeta. A decoder
// accepts its own version and ignores bytes after the fields it knows, so
// version 1 can grow by appending fields; a change that old decoders
// cannot skip needs a new version.
const metaVersion = 1

// Limits on the strings a node gossips about itself. They bound what a
// decoder accepts; Start also checks that this node's worst-case
// metadata fits in metaMaxSize.
const (
	maxIDLen     = 128
	maxRegionLen = 64
	maxURLLen    = 256
	maxStreamLen = 255
)

// cpuScale is the resolution of the CPU fraction on the wire: basis
// points (1/10000).
const cpuScale = 10000

// Metadata flags.
const (
	flagMedia    = 1 << 0
	flagDraining = 1 << 1
)

// nodeMeta is what a node gossips about itself in memberlist's node
// metadata: who it is, what it can carry, its current load, and the
// version of its stream set (so that a peer knows when it has missed a
// stream update and must ask for the full set).
type nodeMeta struct {
	ID, Region, URL string
	Media, Draining bool
	Capacity        Capacity
	Load            Load
	// LoadInterval is how often the node refreshes this record (ms on
	// the wire); a record older than 3×LoadInterval marks it suspect.
	LoadInterval time.Duration
	// Seq increases with every refresh, so that each refresh changes the
	// bytes and memberlist reports it (NotifyUpdate fires only on change).
	Seq uint64
	// StreamsVersion is the version of the node's stream set.
	StreamsVersion uint64
}

// Wire format, version 1 (uv = unsigned varint, str = uv length + bytes):
//
//	byte version=1 | byte flags (bit 0 media, bit 1 draining) |
//	str id | str region | str url |
//	uv max_viewers | uv max_egress_bps |
//	uv viewers | uv publishers | uv egress_bps | uv cpu (basis points) |
//	uv load_interval_ms | uv seq | uv streams_version
//
// Negative figures are sent as 0; CPU is clamped to 0..1.

// encode appends the record to b. It does not check the size limit.
func (m nodeMeta) encode(b []byte) []byte {
	var flags byte
	if m.Media {
		flags |= flagMedia
	}
	if m.Draining {
		flags |= flagDraining
	}
	b = append(b, metaVersion, flags)
	b = appendString(b, m.ID)
	b = appendString(b, m.Region)
	b = appendString(b, m.URL)
	b = binary.AppendUvarint(b, nonNeg(int64(m.Capacity.MaxViewers)))
	b = binary.AppendUvarint(b, nonNeg(m.Capacity.MaxEgressBps))
	b = binary.AppendUvarint(b, nonNeg(int64(m.Load.Viewers)))
	b = binary.AppendUvarint(b, nonNeg(int64(m.Load.Publishers)))
	b = binary.AppendUvarint(b, nonNeg(m.Load.EgressBps))
	b = binary.AppendUvarint(b, cpuToWire(m.Load.CPU))
	b = binary.AppendUvarint(b, nonNeg(m.LoadInterval.Milliseconds()))
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.StreamsVersion)
	return b
}

// decodeMeta parses a record written by encode. It copies what it keeps.
func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != metaVersion {
		return m, fmt.Errorf("cluster: node metadata version %d: %w", v, ErrVersion)
	}
	flags := r.byte()
	m.Media = flags&flagMedia != 0
	m.Draining = flags&flagDraining != 0
	m.ID = r.str(maxIDLen)
	m.Region = r.str(maxRegionLen)
	m.URL = r.str(maxURLLen)
	m.Capacity.MaxViewers = r.int()
	m.Capacity.MaxEgressBps = r.int64()
	m.Load.Viewers = r.int()
	m.Load.Publishers = r.int()
	m.Load.EgressBps = r.int64()
	cpu := r.uvarint()
	ms := r.int64()
	m.Seq = r.uvarint()
	m.StreamsVersion = r.uvarint()
	if r.err != nil {
		return nodeMeta{}, fmt.Errorf("cluster: node metadata: %w", r.err)
	}
	if m.ID == "" {
		return nodeMeta{}, fmt.Errorf("cluster: node metadata: empty node id: %w", ErrMalformed)
	}
	m.Load.CPU = float64(min(cpu, cpuScale)) / cpuScale
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return nodeMeta{}, fmt.Errorf("cluster: node metadata: load interval: %w", ErrMalformed)
	}
	m.LoadInterval = time.Duration(ms) * time.Millisecond
	// Trailing bytes are fields of a later minor revision: ignored.
	return m, nil
}

// worstCaseMeta returns m with every figure at its widest encoding, to
// check that a node's strings leave room for any load it may report.
func worstCaseMeta(m nodeMeta) nodeMeta {
	m.Media, m.Draining = true, true
	m.Capacity = Capacity{MaxViewers: math.MaxInt, MaxEgressBps: math.MaxInt64}
	m.Load = Load{Viewers: math.MaxInt, Publishers: math.MaxInt, EgressBps: math.MaxInt64, CPU: 1}
	m.LoadInterval = time.Duration(math.MaxInt64)
	m.Seq, m.StreamsVersion = math.MaxUint64, math.MaxUint64
	return m
}

func cpuToWire(f float64) uint64 {
	if !(f > 0) { // also NaN
		return 0
	}
	if f >= 1 {
		return cpuScale
	}
	return uint64(math.Round(f * cpuScale))
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes the varint encodings of this package. The first error
// sticks: later reads return zero values, so decoders check err once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w", what, ErrMalformed)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int64() int64 {
	v := r.uvarint()
	if v > math.MaxInt64 {
		r.fail("integer out of range")
		return 0
	}
	return int64(v)
}

func (r *reader) int() int {
	v := r.uvarint()
	if v > math.MaxInt {
		r.fail("integer out of range")
		return 0
	}
	return int(v)
}

// str reads a length-prefixed string of at most max bytes, copying it.
func (r *reader) str(max int) string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(max) {
		r.fail("string too long")
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("truncated string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
