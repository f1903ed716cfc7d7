package cluster

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrClosed is returned by a Membership that has been closed or has
	// left the cluster.
	ErrClosed = errors.New("cluster: membership is closed")
	// ErrOptions is returned by Start when Options are unusable (the
	// wrapping error names the field).
	ErrOptions = errors.New("cluster: invalid options")
	// ErrMetaTooLarge is returned by Start when this node's metadata
	// (id, region and URL plus the load figures) could exceed memberlist's
	// 512-byte limit.
	ErrMetaTooLarge = errors.New("cluster: node metadata exceeds 512 bytes")
	// ErrVersion is returned by the decoders for gossip written in an
	// encoding version this build does not know.
	ErrVersion = errors.New("cluster: unknown encoding version")
	// ErrMalformed is returned by the decoders for gossip that is
	// truncated or out of range.
	ErrMalformed = errors.New("cluster: malformed gossip")
)
