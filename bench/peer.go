package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// deleteTimeout bounds the DELETE a Close sends.
const deleteTimeout = 5 * time.Second

// peer is what publishers and viewers share: a PeerConnection, its WHIP or
// WHEP session, and the goroutines reading from it.
type peer struct {
	pc   *webrtc.PeerConnection
	sess *Session

	start     time.Time
	connected chan struct{} // closed when the PeerConnection first connects
	ended     chan struct{} // closed when it fails or closes
	connOnce  sync.Once
	endOnce   sync.Once

	// mu guards closed, the times below and the wg.Add calls made after
	// Close may have started waiting.
	mu          sync.Mutex
	closed      bool
	postedAt    time.Duration
	connectedAt time.Duration
	answeredAt  time.Duration
	wg          sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

func newPeer(api *webrtc.API) (*peer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	p := &peer{pc: pc, start: time.Now(), connected: make(chan struct{}), ended: make(chan struct{})}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() {
				p.mu.Lock()
				p.connectedAt = time.Since(p.start)
				p.mu.Unlock()
				close(p.connected)
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.endOnce.Do(func() { close(p.ended) })
		}
	})
	return p, nil
}

// goFunc runs f in a goroutine that Close waits for, unless Close has begun.
func (p *peer) goFunc(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// signal gathers all candidates, POSTs the offer and applies the answer.
func (p *peer) signal(ctx context.Context, hc *http.Client, endpoint, token string, stripCands bool) error {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	sdp := p.pc.LocalDescription().SDP
	if stripCands {
		sdp = stripCandidates(sdp)
	}
	p.mu.Lock()
	p.postedAt = time.Since(p.start)
	p.mu.Unlock()
	sess, answer, err := postOffer(ctx, hc, endpoint, token, sdp)
	if err != nil {
		return err
	}
	p.sess = sess
	p.mu.Lock()
	p.answeredAt = time.Since(p.start)
	p.mu.Unlock()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("set remote description: %w", err)
	}
	return nil
}

// waitConnected waits until ICE and DTLS are up.
func (p *peer) waitConnected(ctx context.Context) error {
	select {
	case <-p.connected:
		return nil
	case <-p.ended:
		return fmt.Errorf("%w: state %s", ErrNotConnected, p.pc.ConnectionState())
	case <-ctx.Done():
		return fmt.Errorf("%w: state %s: %w", ErrNotConnected, p.pc.ConnectionState(), ctx.Err())
	}
}

// close sends DELETE if a session exists, closes the PeerConnection and
// waits for the peer's goroutines; stop runs first to end producer loops.
func (p *peer) close(stop func()) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		if stop != nil {
			stop()
		}
		var errs []error
		if p.sess != nil {
			ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
			errs = append(errs, p.sess.Delete(ctx))
			cancel()
		}
		errs = append(errs, p.pc.Close())
		p.wg.Wait()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Session returns the WHIP or WHEP session resource.
func (p *peer) Session() *Session { return p.sess }

// PeerConnection returns the underlying pion PeerConnection.
func (p *peer) PeerConnection() *webrtc.PeerConnection { return p.pc }

// Connected is closed when the PeerConnection first reaches connected.
func (p *peer) Connected() <-chan struct{} { return p.connected }

// Ended is closed when the PeerConnection fails or closes, for example
// when the server ends the session.
func (p *peer) Ended() <-chan struct{} { return p.ended }

// RestartICE restarts ICE through a PATCH (RFC 9725 §4.3.2) and applies
// the server's new credentials; media keeps flowing once ICE reconnects.
func (p *peer) RestartICE(ctx context.Context) error { return p.sess.restartICE(ctx, p.pc) }
