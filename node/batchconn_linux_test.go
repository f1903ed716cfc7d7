package node

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

func TestBatchConnDeliversEveryDatagramInOrder(t *testing.T) {
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	_ = recv.SetReadBuffer(8 << 20)
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newBatchConn(send)
	if err != nil {
		t.Fatal(err)
	}
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1200)
			for i := 0; i < each; i++ {
				binary.BigEndian.PutUint32(b[0:], uint32(w))
				binary.BigEndian.PutUint32(b[4:], uint32(i))
				if n, err := c.WriteToAddrPort(b, dst); err != nil || n != len(b) {
					t.Errorf("write: %d, %v", n, err)
					return
				}
			}
		}()
	}
	// The kernel may drop datagrams when the receiver's buffer is full (the
	// writers outrun this reader on a busy machine); what must hold is
	// that every datagram reaches the kernel (below) and that none arrives
	// out of order.
	last := []int{-1, -1, -1, -1}
	received := 0
	buf := make([]byte, 2000)
	for received < writers*each {
		_ = recv.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			break // the writers are done and the rest was dropped
		}
		if n != 1200 {
			t.Fatalf("datagram of %d bytes, want 1200", n)
		}
		w, i := binary.BigEndian.Uint32(buf[0:]), int(binary.BigEndian.Uint32(buf[4:]))
		if i <= last[w] {
			t.Fatalf("writer %d: datagram %d arrived after %d", w, i, last[w])
		}
		last[w] = i
		received++
	}
	if received < writers*each/2 {
		t.Fatalf("received %d of %d datagrams", received, writers*each)
	}
	wg.Wait()
	if err := c.Close(); err != nil { // flushes, then stops the flusher
		t.Fatal(err)
	}
	batches, sent, direct := c.batchStats()
	t.Logf("%d datagrams in %d sendmmsg calls (%.1f per call), %d written directly; %d received", sent, batches,
		float64(sent)/float64(max(batches, 1)), direct, received)
	if sent+direct != writers*each {
		t.Fatalf("sent %d + direct %d, want %d", sent, direct, writers*each)
	}
}

func TestBatchConnWriteAllocatesNothing(t *testing.T) {
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newBatchConn(send)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	b := make([]byte, 1200)
	if allocs := testing.AllocsPerRun(1000, func() { _, _ = c.WriteToAddrPort(b, dst) }); allocs != 0 {
		t.Fatalf("WriteToAddrPort allocates %.1f times per call, want 0", allocs)
	}
}

// BenchmarkUDPWrite compares a plain sendto per datagram with the batched
// socket, for 1,200-byte datagrams to one loopback receiver.
func BenchmarkUDPWrite(b *testing.B) {
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	go func() {
		buf := make([]byte, 2000)
		for {
			if _, _, err := recv.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	payload := make([]byte, 1200)
	b.Run("sendto", func(b *testing.B) {
		send, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		defer send.Close()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = send.WriteToUDPAddrPort(payload, dst)
		}
	})
	b.Run("batched", func(b *testing.B) {
		send, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		c, _ := newBatchConn(send)
		defer c.Close()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = c.WriteToAddrPort(payload, dst)
		}
	})
}
