package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Join timing.
const (
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
	joinCheck      = time.Second      // how often a joined node checks that it is not alone
	rejoinInterval = 30 * time.Second // how often a joined node contacts a seed again
	resolveTimeout = 2 * time.Second
	defaultPort    = 7946 // for a Join entry without a port
)

// errOnlySelf says that every seed address is this node's own.
var errOnlySelf = errors.New("no seed address besides this node's own")

// joinLoop joins the seeds in Join. While this node is alone it retries
// with backoff (200ms doubling to 5s); once joined it checks every second
// that it still has peers, and every 30s contacts one seed again, so that
// a partition that outlasted the failure detector heals. It exits when
// m.ctx ends.
func (m *Membership) joinLoop() {
	defer m.wg.Done()
	if len(m.opts.Join) == 0 {
		return
	}
	backoff, fails := joinBackoffMin, 0
	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-timer.C:
		}
		wait := joinCheck
		alone := m.ml.NumMembers() <= 1
		if alone || time.Since(last) >= rejoinInterval {
			n, err := m.join(m.ctx, !alone)
			last = time.Now()
			switch {
			case n > 0 && alone:
				m.log.Info("joined the cluster", zap.Int("seeds_answered", n), zap.Int("failed_attempts", fails))
				backoff, fails = joinBackoffMin, 0
			case n == 0 && alone:
				fails++
				if (fails == 1 || fails%20 == 0) && !errors.Is(err, errOnlySelf) {
					m.log.Warn("cannot join the cluster yet; retrying", zap.Int("attempts", fails), zap.Error(err))
				} else {
					m.log.Debug("cannot join the cluster yet; retrying", zap.Int("attempts", fails), zap.Error(err))
				}
				wait, backoff = backoff, min(2*backoff, joinBackoffMax)
			case n == 0:
				m.log.Debug("no seed answered the periodic rejoin", zap.Error(err))
			}
		}
		timer.Reset(wait)
	}
}

// join contacts the seed addresses and returns how many answered. With
// one, it tries them in random order and stops at the first answer.
func (m *Membership) join(ctx context.Context, one bool) (int, error) {
	addrs, errs := m.seedAddrs(ctx)
	if len(addrs) == 0 {
		if len(errs) == 0 {
			return 0, errOnlySelf
		}
		return 0, errors.Join(errs...)
	}
	if one {
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	}
	n := 0
	for _, a := range addrs {
		if ctx.Err() != nil {
			break
		}
		if _, err := m.ml.Join([]string{a}); err != nil {
			errs = append(errs, fmt.Errorf("cluster: join %s: %w", a, err))
			continue
		}
		n++
		if one {
			break
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, errors.Join(errs...)
}

// seedAddrs resolves Join into ip:port addresses, every address of each
// name, leaving out this node's own.
func (m *Membership) seedAddrs(ctx context.Context) ([]string, []error) {
	var (
		addrs []string
		errs  []error
		seen  = make(map[string]bool)
	)
	for _, seed := range m.opts.Join {
		host, port, err := splitHostPort(seed)
		if err != nil { // no port: the whole entry is a host
			host, port = seed, defaultPort
		}
		var ips []string
		if ip := net.ParseIP(host); ip != nil {
			ips = []string{host}
		} else {
			rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			ips, err = m.lookupHost(rctx, host)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("cluster: join %s: %w", seed, err))
				continue
			}
		}
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil || m.isSelf(ip, port) {
				continue
			}
			a := net.JoinHostPort(ip.String(), strconv.Itoa(port))
			if !seen[a] {
				seen[a] = true
				addrs = append(addrs, a)
			}
		}
	}
	return addrs, errs
}

// isSelf reports whether ip:port reaches this node's own memberlist.
func (m *Membership) isSelf(ip net.IP, port int) bool {
	for _, s := range m.selfAddrs {
		if port != s.port {
			continue
		}
		// Bound to all interfaces, any loopback address reaches us; bound to
		// one loopback address (127.0.0.2), another (127.0.0.3) is a
		// different process.
		if ip.Equal(s.ip) || (ip.IsLoopback() && s.ip.IsUnspecified()) {
			return true
		}
	}
	return false
}
