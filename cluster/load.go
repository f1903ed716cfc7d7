package cluster

import (
	"runtime"
	"time"
)

// loadLoop samples the load every LoadInterval (and at once after
// SetDraining) and re-advertises this node's metadata, so that every
// refresh reaches the peers. It exits when m.ctx ends.
func (m *Membership) loadLoop(cpu *cpuMeter) {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		case <-m.refresh:
		}
		m.sample(cpu)
		// UpdateNode queues the new metadata for gossip before it waits
		// for the broadcast to go out; that wait serves nothing here, so
		// it is cut short and its timeout error ignored.
		_ = m.ml.UpdateNode(time.Millisecond)
		m.kickView()
	}
}

// sample reads LoadFunc (and the process's CPU use if LoadFunc leaves CPU
// at 0) and re-encodes the metadata.
func (m *Membership) sample(cpu *cpuMeter) {
	var l Load
	if m.opts.LoadFunc != nil {
		l = m.opts.LoadFunc()
	}
	now := time.Now()
	if c := cpu.sample(now); l.CPU == 0 {
		l.CPU = c
	}
	m.local.mu.Lock()
	m.local.load, m.local.loadAt = l, now
	m.local.seq++
	m.encodeMetaLocked()
	m.local.mu.Unlock()
	m.dirty.Store(true)
}

// cpuMeter turns the process's CPU time into a fraction of all cores
// between two samples. Only the load loop uses it (and Start, before).
type cpuMeter struct {
	last time.Duration
	at   time.Time
	frac float64
}

func (c *cpuMeter) sample(now time.Time) float64 {
	used, ok := processCPU()
	if !ok {
		return 0
	}
	if el := now.Sub(c.at); !c.at.IsZero() && el > 0 {
		c.frac = float64(used-c.last) / (float64(el) * float64(runtime.NumCPU()))
		c.frac = min(max(c.frac, 0), 1)
	}
	c.last, c.at = used, now
	return c.frac
}
