// Package media owns the data path of one stream on one node: the Hub that
// receives a source's RTP tracks and fans every packet out to the viewers'
// down-tracks, the rewriting that keeps what a viewer sees continuous
// (SSRC, sequence numbers, timestamps) across source changes, keyframe
// requests, the shared retransmission history, and simulcast layer choice.
//
// The per-packet path (Hub track read loop → forwarders) takes no lock,
// allocates nothing and logs nothing: it reads an immutable slice of
// down-tracks published through an atomic.Pointer, which control
// operations (a viewer joining or leaving) replace under the hub's mutex.
//
// Media knows nothing of HTTP, sessions or the cluster; the node package
// builds PeerConnections and hands their tracks to a Hub.
package media
