package balancer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"time"
)

// A grant stands in for the caller's token after the balancer's redirect.
// Browsers (Fetch: "Authorization" is removed on a cross-origin redirect)
// and libcurl drop Authorization when they follow a 307 to another origin,
// so the balancer checks the token itself and appends
// "grant=" + SignGrant(...) to the Location (RFC 9725 §4.5). The node that
// receives the re-sent POST accepts a grant that VerifyGrant passes in
// place of the token.
//
// Format: base64url without padding (RFC 4648 §5) of 24 bytes, so always
// 32 characters:
//
//	expiry   8 bytes  Unix seconds, big endian
//	mac     16 bytes  HMAC-SHA256(key, message)[:16]
//
// message = "cascade-grant-v1\x00" ‖ kind (1 byte) ‖ uvarint(len(stream)) ‖
// stream ‖ uvarint(len(node)) ‖ node ‖ expiry (8 bytes). The lengths make
// the encoding unambiguous whatever the names hold. A 128-bit tag is
// beyond forgery within any useful lifetime.
const (
	grantDomain     = "cascade-grant-v1\x00"
	grantMACBytes   = 16
	grantRawBytes   = 8 + grantMACBytes
	grantTextLength = grantRawBytes / 3 * 4 // 24 bytes: 32 characters, no padding
)

var grantEncoding = base64.RawURLEncoding

// grantMAC computes grant tags with one key. It reuses its buffers, so
// one grantMAC serves one goroutine at a time.
type grantMAC struct {
	h       hash.Hash // HMAC-SHA256 with the key
	keyless bool      // the key is empty: verify accepts nothing
	msg     []byte
	sum     [sha256.Size]byte
}

func newGrantMAC(key []byte) *grantMAC {
	return &grantMAC{h: hmac.New(sha256.New, key), keyless: len(key) == 0, msg: make([]byte, 0, 256)}
}

// tag returns the 16-byte tag of (kind, stream, node, expiry); it is valid
// until the next call.
func (m *grantMAC) tag(kind Kind, stream, node string, expiry int64) []byte {
	b := append(m.msg[:0], grantDomain...)
	b = append(b, byte(kind))
	b = binary.AppendUvarint(b, uint64(len(stream)))
	b = append(b, stream...)
	b = binary.AppendUvarint(b, uint64(len(node)))
	b = append(b, node...)
	b = binary.BigEndian.AppendUint64(b, uint64(expiry))
	m.msg = b
	m.h.Reset()
	m.h.Write(b)
	return m.h.Sum(m.sum[:0])[:grantMACBytes]
}

// appendGrant appends the grant for (kind, stream, node) expiring at
// expiry (Unix seconds) to dst.
func (m *grantMAC) appendGrant(dst []byte, kind Kind, stream, node string, expiry int64) []byte {
	var raw [grantRawBytes]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(expiry))
	copy(raw[8:], m.tag(kind, stream, node, expiry))
	return grantEncoding.AppendEncode(dst, raw[:])
}

// verify checks grant as VerifyGrant does.
func (m *grantMAC) verify(grant string, kind Kind, stream, node string, now time.Time) error {
	if m.keyless || len(grant) != grantTextLength {
		return ErrGrantInvalid
	}
	var text [grantTextLength]byte
	copy(text[:], grant)
	var raw [grantRawBytes]byte
	// Exactly 32 characters decode to exactly 24 bytes, so there are no
	// padding bits to be lax about; a '\r' or '\n' (which the decoder
	// skips) makes the count come short and is refused.
	if n, err := grantEncoding.Decode(raw[:], text[:]); err != nil || n != grantRawBytes {
		return ErrGrantInvalid
	}
	expiry := int64(binary.BigEndian.Uint64(raw[:8]))
	if !hmac.Equal(m.tag(kind, stream, node, expiry), raw[8:]) {
		return ErrGrantInvalid
	}
	if now.Unix() >= expiry {
		return ErrGrantExpired
	}
	return nil
}

// SignGrant returns a grant that lets the bearer make one kind of request
// for stream on the node nodeID until expires (rounded down to the
// second), signed with the cluster key. It is URL-safe (32 characters of
// base64url) and needs no escaping in a query string. A grant signed with
// an empty key never verifies.
func SignGrant(key []byte, kind Kind, stream, nodeID string, expires time.Time) string {
	return string(newGrantMAC(key).appendGrant(nil, kind, stream, nodeID, expires.Unix()))
}

// VerifyGrant checks that grant was signed with key for exactly this
// kind, stream and node, and has not expired at now: a grant is valid
// while now is before its expiry second. It returns ErrGrantInvalid for
// anything not signed by key for these values (malformed, tampered,
// another key, kind, stream or node, or an empty key), and ErrGrantExpired
// for a genuine grant past its expiry. The tag is compared in constant
// time, and the expiry is only looked at once the tag matches.
func VerifyGrant(key []byte, grant string, kind Kind, stream, nodeID string, now time.Time) error {
	return newGrantMAC(key).verify(grant, kind, stream, nodeID, now)
}

// GrantVerifier returns a function that checks a grant for the node
// nodeID, in the shape of node.Hooks.VerifyGrant: publish selects the
// kind (Publish or Play), stream is the stream of the POST and grant the
// value of its "grant" query parameter. now nil means time.Now.
func GrantVerifier(key []byte, nodeID string, now func() time.Time) func(publish bool, stream, grant string) error {
	key = append([]byte(nil), key...)
	if now == nil {
		now = time.Now
	}
	return func(publish bool, stream, grant string) error {
		kind := Play
		if publish {
			kind = Publish
		}
		return VerifyGrant(key, grant, kind, stream, nodeID, now())
	}
}

// RelayToken signs the token with which node from may pull stream from node
// upstream until expires: a grant of kind Relay whose subject binds the
// puller to the stream, so one node's token cannot be replayed as
// another's.
func RelayToken(key []byte, stream, from, upstream string, expires time.Time) string {
	return SignGrant(key, Relay, relaySubject(stream, from), upstream, expires)
}

// VerifyRelayToken checks a token presented by node from to pull stream
// from node upstream (this node).
func VerifyRelayToken(key []byte, token, stream, from, upstream string, now time.Time) error {
	return VerifyGrant(key, token, Relay, relaySubject(stream, from), upstream, now)
}

func relaySubject(stream, from string) string { return stream + "\x00" + from }
