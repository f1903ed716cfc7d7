package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one sendmmsg(2) call carries at most,
// and how many a batch queues before writers fall back to sending
// themselves.
const batchSize = 256

// batchConn is the node's media UDP socket with batched writes. pion's
// ICE mux writes every datagram (media, RTCP, DTLS, STUN) through
// WriteToAddrPort; batchConn copies it into a queue and returns, and one
// flusher goroutine sends the queue with sendmmsg(2). A plain sendto(2)
// per datagram was half of a node's CPU at 200 viewers (bench/RESULTS.md):
// with batches, the forwarding loop no longer makes a system call per
// viewer per packet, and the kernel crossing is paid once per batch.
//
// Batches form on their own: while the flusher is in one system call,
// writers fill the next batch. The queue is bounded; when it is full the
// writer waits for the flusher, so nothing is dropped or reordered. Reads
// go straight to the socket.
type batchConn struct {
	*net.UDPConn
	raw syscall.RawConn

	mu      sync.Mutex // guards pending
	room    sync.Cond  // signalled (with mu) when pending has been swapped out
	pending *batch
	spare   *batch // the flusher's; the one being sent

	wake chan struct{} // a batch has its first datagram
	done chan struct{}
	wg   sync.WaitGroup

	batches, sent, direct atomic.Uint64
	sendErr               error // flusher's last error, for the flusher only
	sendFn                func(fd uintptr) bool
}

// batch is a set of datagrams ready for one sendmmsg call. Its arrays are
// allocated once; Go memory referenced from them stays put (the GC does
// not move heap objects) while the system call runs.
type batch struct {
	n    int
	hdrs [batchSize]mmsghdr
	iovs [batchSize]unix.Iovec
	addr [batchSize]unix.RawSockaddrInet4
	data [batchSize][maxDatagram]byte
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// maxDatagram is the largest datagram queued; larger ones are sent
// directly (pion's MTU is 1200, so none are in practice).
const maxDatagram = 1500

var _ interface {
	net.PacketConn
	ReadFromAddrPort([]byte) (int, netip.AddrPort, error)
	WriteToAddrPort([]byte, netip.AddrPort) (int, error)
} = (*batchConn)(nil)

// newBatchConn wraps conn and starts its flusher.
func newBatchConn(conn *net.UDPConn) (*batchConn, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("media: raw udp socket: %w", err)
	}
	c := &batchConn{
		UDPConn: conn,
		raw:     raw,
		pending: newBatch(),
		spare:   newBatch(),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.room.L = &c.mu
	c.sendFn = c.sendSpare
	c.wg.Add(1)
	go c.flushLoop()
	return c, nil
}

func newBatch() *batch {
	b := &batch{}
	for i := range b.hdrs {
		b.iovs[i].Base = &b.data[i][0]
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.addr[i]))
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		b.addr[i].Family = unix.AF_INET
	}
	return b
}

// ReadFromAddrPort reads one datagram from the socket.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

// WriteTo queues b for addr (see WriteToAddrPort).
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("media: write to %v: not a UDP address", addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToAddrPort queues b for addr and returns at once; the flusher sends
// it. It allocates nothing.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	if !ip.Is4() || len(b) > maxDatagram {
		c.direct.Add(1)
		return c.UDPConn.WriteToUDPAddrPort(b, addr)
	}
	c.mu.Lock()
	for c.pending.n == batchSize {
		// The flusher is behind: wait for it rather than send around the
		// queue, which would reorder.
		select {
		case c.wake <- struct{}{}:
		default:
		}
		select {
		case <-c.done:
			c.mu.Unlock()
			return 0, net.ErrClosed
		default:
		}
		c.room.Wait()
	}
	p := c.pending
	i := p.n
	p.n++
	copy(p.data[i][:], b)
	p.iovs[i].SetLen(len(b))
	p.addr[i].Addr = ip.As4()
	port := (*[2]byte)(unsafe.Pointer(&p.addr[i].Port))
	port[0], port[1] = byte(addr.Port()>>8), byte(addr.Port())
	c.mu.Unlock()
	if i == 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// flushLoop sends batches until Close.
func (c *batchConn) flushLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			c.flush() // what was queued before Close
			return
		}
		c.flush()
	}
}

// flush swaps the pending batch for the spare one and sends it.
func (c *batchConn) flush() {
	c.mu.Lock()
	c.pending, c.spare = c.spare, c.pending
	c.room.Broadcast()
	c.mu.Unlock()
	b := c.spare
	if b.n == 0 {
		return
	}
	c.sendErr = nil
	if err := c.raw.Write(c.sendFn); err != nil && c.sendErr == nil {
		c.sendErr = err
	}
	c.batches.Add(1)
	b.n = 0
}

// sendSpare sends the spare batch with sendmmsg, resuming after partial
// sends. It returns false only to wait for the socket to become writable.
// Datagrams the kernel refuses (an unreachable peer) are skipped: UDP has
// no one to tell.
func (c *batchConn) sendSpare(fd uintptr) bool {
	b := c.spare
	off := 0
	for off < b.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&b.hdrs[off])), uintptr(b.n-off), 0, 0, 0)
		switch {
		case errno == unix.EAGAIN:
			// Keep what is left for when the socket is writable again.
			copyDown(b, off)
			return false
		case errno == unix.EINTR:
			continue
		case errno != 0:
			c.sendErr = errno
			off++ // skip the datagram that failed
			continue
		}
		c.sent.Add(uint64(n))
		off += int(n)
	}
	return true
}

// copyDown moves the unsent tail of a batch to its front.
func copyDown(b *batch, off int) {
	if off == 0 {
		return
	}
	for i := off; i < b.n; i++ {
		j := i - off
		n := copy(b.data[j][:], b.data[i][:b.iovs[i].Len])
		b.iovs[j].SetLen(n)
		b.addr[j] = b.addr[i]
	}
	b.n -= off
}

// Close stops the flusher after it has sent what was queued, then closes
// the socket.
func (c *batchConn) Close() error {
	select {
	case <-c.done:
		return errors.New("media: udp socket already closed")
	default:
	}
	close(c.done)
	c.mu.Lock()
	c.room.Broadcast() // writers waiting for room see done
	c.mu.Unlock()
	c.wg.Wait()
	return c.UDPConn.Close()
}

// batchStats reports how the socket's writes went: sendmmsg calls,
// datagrams they sent, and datagrams written directly.
func (c *batchConn) batchStats() (batches, sent, direct uint64) {
	return c.batches.Load(), c.sent.Load(), c.direct.Load()
}
