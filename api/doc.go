// Package api serves Cascade's HTTP surface for people: the management API,
// the dashboard, and the player and publish pages. For now only the pages
// exist: [Pages] serves the embedded publish and play pages and their static
// assets; the WHIP and WHEP endpoints they talk to live elsewhere.
package api
