// Package balancer owns where a new session goes: the node-choice policy
// (Choose, a pure function of the cluster.View, the request and the
// Policy), the short-lived redirect grants that stand in for the caller's
// token after a cross-origin redirect (SignGrant, VerifyGrant), and the
// Redirector that answers POST /whip/{stream} and POST /whep/{stream} with
// 307 Temporary Redirect to the chosen node (RFC 9725 §4.5).
//
// The balancer never proxies media and never reads an offer: the client
// re-sends its POST, body included, to the Location it is given. It sees
// the cluster only through the immutable cluster.View it is handed, so it
// takes no locks on the request path.
package balancer
