// Package bench is Cascade's load generation and measurement library.
//
// It owns synthetic WHIP publishers and WHEP viewers built on pion: a
// Publisher sends encoder-shaped VP8 or H264 video and Opus audio whose
// payloads carry a send timestamp and a per-track counter (see Stamp), and a
// Viewer counts packets, bytes, loss, join time and end-to-end delay per
// track, with no allocation per packet. The end-to-end tests drive a real
// node with them.
//
// A Publisher can pace video as a browser's pacer does
// (PublishOptions.Pacing; Run uses DefaultPacing unless told not to) and
// then stamps each packet as it leaves, so the delay a viewer measures is
// the server's, not that of a keyframe sent in one burst.
//
// Run is `cascade bench`: it starts a node (or reaches one by URL),
// publishes, measures a zero-viewer baseline, then runs a scenario (fanout,
// streams, churn, or cluster: several nodes and a balancer, loaded through
// the balancer, with each node's load, the relay tree and the origin's
// egress per step) in bounded steps (Ramp), reading the nodes' CPU and
// memory from /proc and the generator's own CPU from /proc/self. Each step
// becomes a Step of figures (throughput, loss, join time, delay, CPU per
// forwarded packet, viewers per core, memory per viewer) in a Report,
// printed as a table and written as JSON, CSV or a PNG plot. Viewers send
// no NACKs, so loss is what the node delivered, before any repair.
//
// Signalling follows RFC 9725 (WHIP) and the WHEP draft
// (draft-ietf-wish-whep): POST an offer, get 201 with the answer and a
// session resource, PATCH trickle or ICE restart fragments (RFC 8840), DELETE
// to end.
package bench
