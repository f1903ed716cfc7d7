// Package cluster owns what the nodes of a Cascade cluster know of each
// other: membership over hashicorp/memberlist (each node's id, region,
// URL, capacity, load and the streams it holds) and the immutable View of
// it that the balancer and nodes read without locks.
package cluster
