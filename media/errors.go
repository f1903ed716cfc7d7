package media

import "errors"

var (
	// ErrNoCommonCodec means a viewer's offer lists no codec the source sends.
	ErrNoCommonCodec = errors.New("no codec in common with the source")
	// ErrHubClosed means the hub has ended (its source left) and takes no viewers.
	ErrHubClosed = errors.New("stream has ended")
	// ErrNoTrack means the hub carries no track of the requested kind.
	ErrNoTrack = errors.New("stream has no track of this kind")
)
