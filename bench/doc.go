// Package bench is Cascade's load generation and measurement library.
//
// It owns synthetic WHIP publishers and WHEP viewers built on pion: a
// Publisher sends encoder-shaped VP8 or H264 video and Opus audio whose
// payloads carry a send timestamp and a per-track counter (see Stamp), and a
// Viewer counts packets, bytes, loss, join time and end-to-end delay per
// track. The end-to-end tests drive a real node with it, and the future
// `cascade bench` command will build on it.
//
// Signalling follows RFC 9725 (WHIP) and the WHEP draft
// (draft-ietf-wish-whep): POST an offer, get 201 with the answer and a
// session resource, PATCH trickle or ICE restart fragments (RFC 8840), DELETE
// to end.
package bench
