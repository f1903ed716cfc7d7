//go:build !linux

package node

import (
	"errors"
	"net"
)

// batchConn batches writes only on Linux (sendmmsg); elsewhere the media
// socket is used as it is.
type batchConn struct{ net.PacketConn }

func newBatchConn(*net.UDPConn) (*batchConn, error) {
	return nil, errors.New("batched writes need Linux")
}

func (c *batchConn) batchStats() (batches, sent, direct uint64) { return 0, 0, 0 }
