package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// metaCases are valid metadata records; the fuzz target starts from them.
var metaCases = []struct {
	name string
	meta nodeMeta
}{
	{"balancer, zero load", nodeMeta{ID: "lb-1", Region: "eu", URL: "https://lb-1.example"}},
	{"media node under load", nodeMeta{
		ID: "edge-7", Region: "us-east", URL: "https://edge-7.example:8443", Media: true,
		Capacity:     Capacity{MaxViewers: 2000, MaxEgressBps: 1_000_000_000},
		Load:         Load{Viewers: 1234, Publishers: 3, EgressBps: 987_654_321, CPU: 0.4321},
		LoadInterval: 500 * time.Millisecond, Seq: 77, StreamsVersion: 1_763_700_000_000_000_123,
	}},
	{"draining", nodeMeta{ID: "n", Media: true, Draining: true, LoadInterval: time.Second, Seq: 1}},
	{"cpu saturated", nodeMeta{ID: "n", Load: Load{CPU: 1}}},
}

func TestMetaRoundTrip(t *testing.T) {
	for _, c := range metaCases {
		t.Run(c.name, func(t *testing.T) {
			b := c.meta.encode(nil)
			if len(b) > metaMaxSize {
				t.Fatalf("encoded %d bytes", len(b))
			}
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.meta) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, c.meta)
			}
		})
	}
}

func TestMetaEncodeClamps(t *testing.T) {
	m := nodeMeta{ID: "n", Capacity: Capacity{MaxViewers: -1}, Load: Load{Viewers: -5, EgressBps: -1, CPU: 7}}
	got, err := decodeMeta(m.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Capacity.MaxViewers != 0 || got.Load.Viewers != 0 || got.Load.EgressBps != 0 || got.Load.CPU != 1 {
		t.Fatalf("negative figures should read 0 and CPU 1, got %+v", got)
	}
	for _, f := range []float64{-0.5, 0, math.NaN()} {
		if cpuToWire(f) != 0 {
			t.Fatalf("cpuToWire(%v) != 0", f)
		}
	}
}

func TestMetaWorstCaseSize(t *testing.T) {
	// The longest strings a real deployment is likely to use still leave
	// room for the widest load figures.
	long := nodeMeta{
		ID:     strings.Repeat("i", 64),  // a long hostname
		Region: strings.Repeat("r", 32),  // "ap-southeast-2-zone-b"-like, doubled
		URL:    strings.Repeat("u", 256), // the longest URL Options accepts
	}
	if n := len(worstCaseMeta(long).encode(nil)); n > metaMaxSize {
		t.Fatalf("worst case of a long but valid node takes %d bytes", n)
	}
	// Every string at its own maximum does not fit: Start refuses it
	// cleanly instead of memberlist panicking later.
	o := Options{
		NodeID: strings.Repeat("i", maxIDLen), Region: strings.Repeat("r", maxRegionLen),
		URL: strings.Repeat("u", maxURLLen), Bind: "127.0.0.1:0", Key: testKey,
	}
	m, err := Start(o)
	if err == nil {
		m.Close()
		t.Fatal("Start accepted metadata that can exceed 512 bytes")
	}
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("err = %v, want ErrMetaTooLarge", err)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	good := metaCases[1].meta.encode(nil)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"future version", append([]byte{2}, good[1:]...), ErrVersion},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"truncated in a string", good[:5], ErrMalformed},
		{"no id", (&nodeMeta{}).encode(nil), ErrMalformed},
		{"id too long", (&nodeMeta{ID: strings.Repeat("x", maxIDLen+1)}).encode(nil), ErrMalformed},
		{"integer out of range", func() []byte {
			b := []byte{metaVersion, 0}
			b = appendString(b, "n")
			b = appendString(b, "")
			b = appendString(b, "")
			return binary.AppendUvarint(b, 1<<63) // max_viewers
		}(), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeMeta(c.b); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	// Fields appended by a later minor revision are ignored.
	if _, err := decodeMeta(append(append([]byte(nil), good...), 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
}

// streamMsgCases are valid stream messages; the fuzz targets start from
// them.
var streamMsgCases = []struct {
	name string
	b    []byte
	want streamMsg
}{
	{"empty full set", encodeFull(kindFull, "a", &streamSet{version: 9, streams: map[string]Role{}}),
		streamMsg{kind: kindFull, node: "a", version: 9, streams: map[string]Role{}}},
	{"full set", encodeFull(kindFull, "a", &streamSet{version: 10, streams: map[string]Role{"cam1": RoleOrigin, "cam2": RoleRelay}}),
		streamMsg{kind: kindFull, node: "a", version: 10, streams: map[string]Role{"cam1": RoleOrigin, "cam2": RoleRelay}}},
	{"full set reply", encodeFull(kindFullSync, "b", &streamSet{version: 3, streams: map[string]Role{"x": RoleRelay}}),
		streamMsg{kind: kindFullSync, node: "b", version: 3, streams: map[string]Role{"x": RoleRelay}}},
	{"full set with upstreams", encodeFull(kindFull, "edge-2", &streamSet{version: 4,
		streams:   map[string]Role{"cam1": RoleRelay, "cam2": RoleRelay, "cam3": RoleOrigin},
		upstreams: map[string]string{"cam1": "origin-1"}}), // cam2's upstream is unknown
		streamMsg{kind: kindFull, node: "edge-2", version: 4,
			streams:   map[string]Role{"cam1": RoleRelay, "cam2": RoleRelay, "cam3": RoleOrigin},
			upstreams: map[string]string{"cam1": "origin-1"}}},
	{"full set, longest upstream", encodeFull(kindFullSync, "e", &streamSet{version: 5,
		streams: map[string]Role{"s": RoleRelay}, upstreams: map[string]string{"s": strings.Repeat("u", maxIDLen)}}),
		streamMsg{kind: kindFullSync, node: "e", version: 5,
			streams: map[string]Role{"s": RoleRelay}, upstreams: map[string]string{"s": strings.Repeat("u", maxIDLen)}}},
	{"delta add", encodeDelta("a", 11, opOrigin, "cam3", ""), streamMsg{kind: kindDelta, node: "a", version: 11, op: opOrigin, stream: "cam3"}},
	{"delta relay", encodeDelta("a", 12, opRelay, "cam4", "origin-1"),
		streamMsg{kind: kindDelta, node: "a", version: 12, op: opRelay, stream: "cam4", upstream: "origin-1"}},
	{"delta relay, upstream unknown", encodeDelta("a", 13, opRelay, "cam5", ""),
		streamMsg{kind: kindDelta, node: "a", version: 13, op: opRelay, stream: "cam5"}},
	{"delta remove", encodeDelta("a", 14, opRemove, "cam1", ""), streamMsg{kind: kindDelta, node: "a", version: 14, op: opRemove, stream: "cam1"}},
	{"sync request", encodeSyncReq("a", "c"), streamMsg{kind: kindSyncReq, node: "a", from: "c"}},
}

func TestStreamMsgRoundTrip(t *testing.T) {
	for _, c := range streamMsgCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeStreamMsg(c.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDecodeStreamMsgErrors(t *testing.T) {
	full := streamMsgCases[1].b
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"future version", append([]byte{9}, full[1:]...), ErrVersion},
		{"version 1", append([]byte{1}, full[1:]...), ErrVersion},
		{"unknown kind", []byte{wireVersion, 99, 1, 'a'}, ErrMalformed},
		{"truncated", full[:len(full)-1], ErrMalformed},
		{"trailing bytes", append(append([]byte(nil), full...), 0), ErrMalformed},
		{"empty node", encodeDelta("", 2, opOrigin, "s", ""), ErrMalformed},
		{"empty stream", encodeDelta("a", 2, opOrigin, "", ""), ErrMalformed},
		{"delta to version 0", encodeDelta("a", 0, opOrigin, "s", ""), ErrMalformed},
		{"bad op", encodeDelta("a", 2, 7, "s", ""), ErrMalformed},
		{"bad role in set", []byte{wireVersion, kindFull, 1, 'a', 1, 1, 1, 's', 9}, ErrMalformed},
		{"stream twice", []byte{wireVersion, kindFull, 1, 'a', 1, 2, 1, 's', 1, 1, 's', 2, 0}, ErrMalformed},
		{"huge count", []byte{wireVersion, kindFull, 1, 'a', 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrMalformed},
		{"sync request from nobody", encodeSyncReq("a", ""), ErrMalformed},
		// Relay entries carry an upstream; origin entries and other ops do not.
		{"relay entry without its upstream", []byte{wireVersion, kindFull, 1, 'a', 1, 1, 1, 's', opRelay}, ErrMalformed},
		{"origin entry with an upstream", []byte{wireVersion, kindFull, 1, 'a', 1, 1, 1, 's', opOrigin, 1, 'u'}, ErrMalformed},
		{"relay delta without its upstream", func() []byte {
			b := encodeDelta("a", 2, opRelay, "s", "")
			return b[:len(b)-1] // the upstream's length byte
		}(), ErrMalformed},
		{"remove delta with an upstream", append(encodeDelta("a", 2, opRemove, "s", ""), 1, 'u'), ErrMalformed},
		{"upstream too long in a set", encodeFull(kindFull, "a", &streamSet{version: 1,
			streams: map[string]Role{"s": RoleRelay}, upstreams: map[string]string{"s": strings.Repeat("u", maxIDLen+1)}}), ErrMalformed},
		{"upstream too long in a delta", encodeDelta("a", 2, opRelay, "s", strings.Repeat("u", maxIDLen+1)), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeStreamMsg(c.b); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	sets := map[string]*streamSet{
		"a": {version: 5, streams: map[string]Role{"s1": RoleOrigin}},
		"b": {version: 7, streams: map[string]Role{}},
		"c": {version: 1, streams: map[string]Role{"s1": RoleRelay, "s2": RoleRelay}, upstreams: map[string]string{"s1": "a"}},
		"d": {version: 2, streams: map[string]Role{"s1": RoleRelay}, upstreams: map[string]string{"s1": "c"}},
	}
	got, err := decodeState(encodeState(sets))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(got, sets, func(x, y *streamSet) bool { return reflect.DeepEqual(x, y) }) {
		t.Fatalf("round trip: got %v", got)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version 1":   {1, 0},
		"bad version": {3, 0},
		"node twice":  {wireVersion, 2, 1, 'a', 1, 0, 1, 'a', 2, 0},
		"huge count":  {wireVersion, 0xff, 0xff, 0xff, 0x0f},
		"truncated":   encodeState(sets)[:10],
	} {
		if _, err := decodeState(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestTableVersions(t *testing.T) {
	now := time.Now()
	set := func(v uint64, kv ...string) *streamSet {
		s := &streamSet{version: v, streams: map[string]Role{}}
		for i := 0; i < len(kv); i += 2 {
			s.streams[kv[i]] = Role(kv[i+1])
		}
		return s
	}
	delta := func(v uint64, op byte, stream string) streamMsg {
		return streamMsg{kind: kindDelta, node: "a", version: v, op: op, stream: stream}
	}
	streams := func(tb *table) map[string]Role { return tb.entries["a"].set.streams }

	t.Run("a stale full set loses", func(t *testing.T) {
		tb := newTable()
		if !tb.applyFull("a", set(10, "x", "origin"), now, true) {
			t.Fatal("first set not applied")
		}
		if tb.applyFull("a", set(9, "y", "origin"), now, true) || tb.applyFull("a", set(10, "y", "origin"), now, true) {
			t.Fatal("older or equal version applied")
		}
		if _, ok := streams(tb)["x"]; !ok {
			t.Fatal("newer set lost")
		}
	})
	t.Run("deltas apply in order, stale ones are not news", func(t *testing.T) {
		tb := newTable()
		tb.applyFull("a", set(10), now, true)
		if applied, fresh := tb.applyDelta(delta(11, opOrigin, "x"), now, true); !applied || !fresh {
			t.Fatal("next delta not applied")
		}
		if applied, fresh := tb.applyDelta(delta(11, opOrigin, "x"), now, true); applied || fresh {
			t.Fatal("repeated delta applied or spread")
		}
		if applied, _ := tb.applyDelta(delta(12, opRemove, "x"), now, true); !applied || len(streams(tb)) != 0 {
			t.Fatal("remove not applied")
		}
	})
	t.Run("out-of-order deltas wait for the gap", func(t *testing.T) {
		tb := newTable()
		tb.applyFull("a", set(10), now, true)
		if applied, fresh := tb.applyDelta(delta(12, opRelay, "y"), now, true); applied || !fresh {
			t.Fatal("delta after a gap: want held and spread")
		}
		if applied, _ := tb.applyDelta(delta(11, opOrigin, "x"), now, true); !applied {
			t.Fatal("gap not filled")
		}
		if got := tb.entries["a"].version(); got != 12 || len(streams(tb)) != 2 || len(tb.entries["a"].pending) != 0 {
			t.Fatalf("after the gap: version %d, streams %v", got, streams(tb))
		}
	})
	t.Run("a full set supersedes held deltas", func(t *testing.T) {
		tb := newTable()
		tb.applyFull("a", set(10), now, true)
		tb.applyDelta(delta(13, opRelay, "z"), now, true)
		tb.applyFull("a", set(12, "x", "origin"), now, true)
		if got := tb.entries["a"].version(); got != 13 || len(streams(tb)) != 2 {
			t.Fatalf("version %d, streams %v; want 13 with x and z", got, streams(tb))
		}
	})
	t.Run("a relay's upstream travels in deltas", func(t *testing.T) {
		tb := newTable()
		tb.applyFull("a", set(10), now, true)
		ups := func() map[string]string { return tb.entries["a"].set.upstreams }
		relay := func(v uint64, up string) streamMsg {
			d := delta(v, opRelay, "x")
			d.upstream = up
			return d
		}
		tb.applyDelta(relay(11, "o1"), now, true)
		if got := ups(); streams(tb)["x"] != RoleRelay || got["x"] != "o1" {
			t.Fatalf("after relay from o1: %v %v", streams(tb), got)
		}
		before := ups()
		tb.applyDelta(relay(12, "o2"), now, true)
		if ups()["x"] != "o2" || before["x"] != "o1" {
			t.Fatalf("new upstream: now %v, earlier set changed to %v", ups(), before)
		}
		tb.applyDelta(relay(13, ""), now, true)
		if ups() != nil || streams(tb)["x"] != RoleRelay {
			t.Fatalf("upstream unknown again: %v %v", streams(tb), ups())
		}
		tb.applyDelta(relay(14, "o3"), now, true)
		tb.applyDelta(delta(15, opOrigin, "x"), now, true)
		if ups() != nil || streams(tb)["x"] != RoleOrigin {
			t.Fatalf("origin keeps an upstream: %v", ups())
		}
		tb.applyDelta(relay(16, "o4"), now, true)
		tb.applyDelta(delta(17, opRemove, "x"), now, true)
		if ups() != nil || len(streams(tb)) != 0 {
			t.Fatalf("removed stream keeps an upstream: %v", ups())
		}
	})
	t.Run("departed nodes are forgotten after the ttl", func(t *testing.T) {
		tb := newTable()
		tb.applyFull("a", set(10), now, true)
		tb.applyFull("ghost", set(3), now, false) // never a member
		tb.setMember("a", false, now)
		tb.gc(now.Add(time.Second), time.Minute)
		if len(tb.entries) != 2 {
			t.Fatal("dropped too early")
		}
		tb.gc(now.Add(2*time.Minute), time.Minute)
		if len(tb.entries) != 0 {
			t.Fatalf("kept %v", tb.entries)
		}
	})
}

// TestFitsGossipBound: a set that fitsGossip accepts really encodes in at
// most fullSetLimit bytes, at every varint width of its strings.
func TestFitsGossipBound(t *testing.T) {
	shapes := []struct {
		name          string
		node          string
		role          Role
		streamLen, up int
	}{
		{"origins, short names", "n1", RoleOrigin, 8, 0},
		{"relays, upstream unknown", "n1", RoleRelay, 8, 0},
		{"relays, short upstreams", "edge-eu-1", RoleRelay, 12, 10},
		{"relays, 127-byte names and upstreams", strings.Repeat("n", 127), RoleRelay, 127, 127},
		{"relays, 128-byte names and upstreams", strings.Repeat("n", maxIDLen), RoleRelay, 128, maxIDLen},
		{"relays, longest names", strings.Repeat("n", maxIDLen), RoleRelay, maxStreamLen, maxIDLen},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			s := &streamSet{version: math.MaxUint64, streams: map[string]Role{}}
			for i := 0; ; i++ {
				name := fmt.Sprintf("%0*d", sh.streamLen, i)
				up := strings.Repeat("u", sh.up)
				op := roleOp(sh.role)
				next := s.with(s.version, op, name, up)
				if !fitsGossip(sh.node, next) {
					if i == 0 {
						t.Fatal("not even one entry fits")
					}
					t.Logf("%d entries fit in %d bytes", i, len(encodeFull(kindFull, sh.node, s)))
					return
				}
				s = next
				if n := len(encodeFull(kindFull, sh.node, s)); n > fullSetLimit {
					t.Fatalf("%d entries take %d bytes, but fitsGossip accepts them", len(s.streams), n)
				}
			}
		})
	}
}
