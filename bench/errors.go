package bench

import (
	"errors"
	"fmt"
)

var (
	// ErrUnexpectedStatus is wrapped by every StatusError: the server answered
	// a signalling request with a status the client did not expect.
	ErrUnexpectedStatus = errors.New("bench: unexpected HTTP status")
	// ErrNoLocation means a 201 answer carried no Location header
	// (RFC 9725 §4.2 requires one).
	ErrNoLocation = errors.New("bench: 201 response without Location")
	// ErrTooManyRedirects means the POST was redirected more than maxRedirects times.
	ErrTooManyRedirects = errors.New("bench: too many redirects")
	// ErrNotConnected means the PeerConnection failed or closed before it
	// reached the connected state.
	ErrNotConnected = errors.New("bench: peer connection did not connect")
	// ErrUnknownCodec means a codec name is not one of VP8, VP9, H264, AV1, opus.
	ErrUnknownCodec = errors.New("bench: unknown codec")
	// ErrBadFragment means an ICE restart answer fragment lacked ice-ufrag or ice-pwd.
	ErrBadFragment = errors.New("bench: answer fragment without ice-ufrag/ice-pwd")
)

// StatusError is a signalling response with an unexpected status. Tests use
// it to check the exact status and reason a server gave.
type StatusError struct {
	Method string
	URL    string
	Code   int
	// Body is the start of the response body (the server's reason).
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %q", e.Method, e.URL, e.Code, e.Body)
}

// Unwrap lets errors.Is(err, ErrUnexpectedStatus) match.
func (e *StatusError) Unwrap() error { return ErrUnexpectedStatus }

// StatusCode returns the HTTP status of a StatusError anywhere in err's
// chain, or 0.
func StatusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
