package node

import "errors"

var (
	// ErrNotLive means a viewer asked for a stream with no publisher here.
	ErrNotLive = errors.New("stream is not live")
	// ErrPublisherExists means a stream has a publisher and takeover is off.
	ErrPublisherExists = errors.New("stream already has a publisher")
	// ErrBadOffer means an SDP offer could not be used.
	ErrBadOffer = errors.New("bad offer")
)
