package balancer

import "errors"

var (
	// ErrNotLive means a viewer asked for a stream that no alive node holds
	// as its origin: nobody is publishing it. The Redirector answers 404.
	ErrNotLive = errors.New("stream is not live")
	// ErrNoCapacity means no alive media node can take the session: every
	// candidate is full, or there is none. The Redirector answers 503 with
	// Retry-After.
	ErrNoCapacity = errors.New("no node has room")
	// ErrUnknownKind means a Request's Kind is neither Publish nor Play.
	ErrUnknownKind = errors.New("unknown request kind")
	// ErrGrantInvalid means a grant is malformed, was signed with another
	// key, or was issued for another kind, stream or node.
	ErrGrantInvalid = errors.New("invalid grant")
	// ErrGrantExpired means a grant was signed by the key for this request
	// but its expiry has passed.
	ErrGrantExpired = errors.New("grant expired")
)
