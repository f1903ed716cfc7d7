package cluster

import (
	"reflect"
	"testing"
)

// The decoders read gossip from the network: whatever the bytes, they
// must not panic, and what they accept must survive a round trip.

func FuzzDecodeMeta(f *testing.F) {
	for _, c := range metaCases {
		f.Add(c.meta.encode(nil))
	}
	f.Add([]byte{metaVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		again, err := decodeMeta(m.encode(nil))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", m, again)
		}
	})
}

func FuzzDecodeStreamMsg(f *testing.F) {
	for _, c := range streamMsgCases {
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStreamMsg(b)
		if err != nil {
			return
		}
		var enc []byte
		switch m.kind {
		case kindFull, kindFullSync:
			enc = encodeFull(m.kind, m.node, m.set())
		case kindDelta:
			enc = encodeDelta(m.node, m.version, m.op, m.stream, m.upstream)
		case kindSyncReq:
			enc = encodeSyncReq(m.node, m.from)
		default:
			t.Fatalf("accepted kind %d", m.kind)
		}
		again, err := decodeStreamMsg(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, again)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(map[string]*streamSet{
		"a": {version: 5, streams: map[string]Role{"s1": RoleOrigin}},
		"b": {version: 7, streams: map[string]Role{}},
		"c": {version: 9, streams: map[string]Role{"s1": RoleRelay, "s2": RoleRelay}, upstreams: map[string]string{"s1": "a"}},
	}))
	for _, c := range streamMsgCases {
		if c.want.kind == kindFull || c.want.kind == kindFullSync {
			f.Add(append([]byte{wireVersion, 1}, c.b[2:]...)) // the set as a one-node state
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sets, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := decodeState(encodeState(sets))
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, sets) {
			t.Fatalf("round trip changed the state")
		}
	})
}
