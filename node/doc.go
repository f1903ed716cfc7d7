// Package node runs one Cascade media node: the WHIP (RFC 9725) publish and
// WHEP (draft-ietf-wish-whep) play resources, their PeerConnections and
// sessions, and the node's local load figures. It hands media to a
// media.Hub per stream and knows nothing of HTTP routing above its own
// resources, of pages, or of the cluster.
package node
