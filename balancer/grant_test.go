package balancer

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	t0       = time.Unix(1_800_000_000, 0)
)

func TestGrant(t *testing.T) {
	g := SignGrant(testKey, Play, "show", "eu-a", t0.Add(30*time.Second))
	if len(g) != 32 || url.QueryEscape(g) != g {
		t.Fatalf("grant %q: want 32 characters that need no escaping", g)
	}
	flip := func(i int) string {
		b := []byte(g)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name   string
		key    []byte
		grant  string
		kind   Kind
		stream string
		node   string
		now    time.Time
		err    error
	}{
		{"a grant verifies for what it was signed for", testKey, g, Play, "show", "eu-a", t0, nil},
		{"a grant verifies until the second before expiry", testKey, g, Play, "show", "eu-a", t0.Add(30*time.Second - time.Nanosecond), nil},
		{"a grant expires at its expiry", testKey, g, Play, "show", "eu-a", t0.Add(30 * time.Second), ErrGrantExpired},
		{"a grant expires after its expiry", testKey, g, Play, "show", "eu-a", t0.Add(time.Hour), ErrGrantExpired},
		{"another stream", testKey, g, Play, "show2", "eu-a", t0, ErrGrantInvalid},
		{"another node", testKey, g, Play, "show", "eu-b", t0, ErrGrantInvalid},
		{"another kind", testKey, g, Publish, "show", "eu-a", t0, ErrGrantInvalid},
		{"another key", otherKey, g, Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"an empty key", nil, SignGrant(nil, Play, "show", "eu-a", t0.Add(time.Minute)), Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"a tampered expiry", testKey, flip(3), Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"a tampered tag", testKey, flip(31), Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"empty", testKey, "", Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"garbage", testKey, "not a grant at all, not even close", Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"not base64url", testKey, strings.Repeat("*", 32), Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"standard base64 instead of base64url", testKey, strings.Repeat("+", 32), Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"one character short", testKey, g[:31], Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"one character long", testKey, g + "A", Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"a newline in place of a character", testKey, g[:31] + "\n", Play, "show", "eu-a", t0, ErrGrantInvalid},
		{"with padding", testKey, g[:30] + "==", Play, "show", "eu-a", t0, ErrGrantInvalid},
		// The lengths in the signed message keep "ab"+"c" apart from "a"+"bc".
		{"stream and node shifted", testKey, SignGrant(testKey, Play, "ab", "c", t0.Add(time.Minute)), Play, "a", "bc", t0, ErrGrantInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyGrant(tc.key, tc.grant, tc.kind, tc.stream, tc.node, tc.now)
			if !errors.Is(err, tc.err) {
				t.Fatalf("VerifyGrant = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestGrantIsDeterministicAndRoundsExpiryDown(t *testing.T) {
	a := SignGrant(testKey, Publish, "show", "eu-a", t0.Add(900*time.Millisecond))
	b := SignGrant(testKey, Publish, "show", "eu-a", t0)
	if a != b {
		t.Fatalf("grants for the same second differ: %q, %q", a, b)
	}
	if err := VerifyGrant(testKey, a, Publish, "show", "eu-a", t0.Add(-time.Nanosecond)); err != nil {
		t.Fatalf("VerifyGrant before expiry: %v", err)
	}
	if err := VerifyGrant(testKey, a, Publish, "show", "eu-a", t0.Add(500*time.Millisecond)); !errors.Is(err, ErrGrantExpired) {
		t.Fatalf("VerifyGrant within the expiry second = %v, want ErrGrantExpired", err)
	}
}

func TestGrantVerifier(t *testing.T) {
	verify := GrantVerifier(testKey, "eu-a", func() time.Time { return t0 })
	pub := SignGrant(testKey, Publish, "show", "eu-a", t0.Add(time.Minute))
	play := SignGrant(testKey, Play, "show", "eu-a", t0.Add(time.Minute))
	if err := verify(true, "show", pub); err != nil {
		t.Errorf("publish grant: %v", err)
	}
	if err := verify(false, "show", play); err != nil {
		t.Errorf("play grant: %v", err)
	}
	if err := verify(false, "show", pub); !errors.Is(err, ErrGrantInvalid) {
		t.Errorf("publish grant used to play: %v, want ErrGrantInvalid", err)
	}
	if err := GrantVerifier(testKey, "eu-b", nil)(true, "show", pub); !errors.Is(err, ErrGrantInvalid) {
		t.Errorf("grant for eu-a on eu-b: %v, want ErrGrantInvalid", err)
	}
}

func FuzzVerifyGrant(f *testing.F) {
	f.Add(SignGrant(testKey, Play, "show", "eu-a", t0.Add(30*time.Second)), byte(Play), "show", "eu-a", int64(0))
	f.Add(SignGrant(testKey, Publish, "s", "n", t0.Add(-time.Second)), byte(Publish), "s", "n", int64(0))
	f.Add(SignGrant(testKey, Play, "ab", "c", t0.Add(time.Minute)), byte(Play), "a", "bc", int64(10))
	f.Add("", byte(Play), "show", "eu-a", int64(0))
	f.Add(strings.Repeat("A", 32), byte(0), "", "", int64(-1))
	f.Add("not a grant at all, not even close", byte(2), "show", "eu-a", int64(1<<40))
	f.Fuzz(func(t *testing.T, grant string, kind byte, stream, node string, offset int64) {
		now := t0.Add(time.Duration(offset) * time.Second)
		err := VerifyGrant(testKey, grant, Kind(kind), stream, node, now)
		if err != nil && !errors.Is(err, ErrGrantInvalid) && !errors.Is(err, ErrGrantExpired) {
			t.Fatalf("VerifyGrant returned %v, not a grant error", err)
		}
		if err != nil && !errors.Is(err, ErrGrantExpired) {
			return
		}
		// Accepted (or expired, which also means the tag matched): the grant
		// must be exactly what the key signs for these values.
		raw, derr := base64.RawURLEncoding.DecodeString(grant)
		if derr != nil || len(raw) != grantRawBytes {
			t.Fatalf("VerifyGrant passed %q, which does not decode to a grant", grant)
		}
		expiry := int64(0)
		for _, c := range raw[:8] {
			expiry = expiry<<8 | int64(c)
		}
		if want := SignGrant(testKey, Kind(kind), stream, node, time.Unix(expiry, 0)); grant != want {
			t.Fatalf("VerifyGrant passed %q for (%d, %q, %q), but the key signs %q", grant, kind, stream, node, want)
		}
		if VerifyGrant(otherKey, grant, Kind(kind), stream, node, now) == nil {
			t.Fatalf("grant %q passes under another key", grant)
		}
	})
}

func TestRelayToken(t *testing.T) {
	key := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	tok := RelayToken(key, "s", "edge-1", "origin", now.Add(time.Minute))
	if err := VerifyRelayToken(key, tok, "s", "edge-1", "origin", now); err != nil {
		t.Fatalf("valid relay token refused: %v", err)
	}
	for name, check := range map[string]error{
		"other puller":    VerifyRelayToken(key, tok, "s", "edge-2", "origin", now),
		"other upstream":  VerifyRelayToken(key, tok, "s", "edge-1", "edge-3", now),
		"other stream":    VerifyRelayToken(key, tok, "t", "edge-1", "origin", now),
		"as a play grant": VerifyGrant(key, tok, Play, "s", "origin", now),
		"expired":         VerifyRelayToken(key, tok, "s", "edge-1", "origin", now.Add(2*time.Minute)),
	} {
		if check == nil {
			t.Errorf("%s: token accepted", name)
		}
	}
}
