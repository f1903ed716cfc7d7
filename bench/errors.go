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
	// ErrBadOption means a load-run option is missing, out of range or in
	// conflict with another; the message names the option.
	ErrBadOption = errors.New("bench: bad option")
	// ErrServerExited means the cascade process the bench started exited
	// before it was ready or before the run ended.
	ErrServerExited = errors.New("bench: cascade server exited")
	// ErrNoKeyframe means a viewer connected but no video keyframe arrived
	// within the join timeout.
	ErrNoKeyframe = errors.New("bench: no keyframe")

	// errNoSteps means a plot was asked of a run without steps (churn).
	errNoSteps = errors.New("bench: the plot needs a run with steps (fanout or streams)")
	// errInFlight means a churn join was skipped because too many were
	// still in flight: the node (or the generator) is not keeping up.
	errInFlight = errors.New("bench: too many joins in flight")
	// errGaveUp marks the joins a step did not attempt after too many failed.
	errGaveUp = errors.New("bench: not attempted after too many failed joins")
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
