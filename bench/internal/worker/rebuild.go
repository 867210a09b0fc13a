package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/histogram"
	"github.com/parley-chat/parley/bench/internal/wire"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// send sends bursts of stamped messages (set-up and the messages sent to
// cut links), depth in flight per burst, and waits for every ack.
func (w *Worker) send(ctx context.Context, sends []control.Send, depth int) *control.Reply {
	if depth < 1 {
		depth = 16
	}
	r := &control.Reply{LastSeqs: map[string]int64{}}
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	for si, s := range sends {
		c := w.link(s.Conn)
		if c == nil {
			return &control.Reply{Err: fmt.Sprintf("send %d: link %d is not open", si, s.Conn)}
		}
		sem := make(chan struct{}, depth)
		for j := range s.Count {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				text := wire.AppendText(nil, wire.Stamp{SentNanos: time.Now().UnixNano(), Publisher: 0}, 64)
				res, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Send{Send: &pb.Send{
					ConversationId: s.Conv, ClientId: "b-" + stamp + "-" + strconv.Itoa(si) + "-" + strconv.Itoa(j), Text: string(text)}}})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err.Error())
					return
				}
				if seq := res.GetSent().GetSeq(); seq > r.LastSeqs[s.Conv] {
					r.LastSeqs[s.Conv] = seq
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		r.Err = fmt.Sprintf("%d sends failed; first: %s", len(errs), errs[0])
	}
	return r
}

// expectAll waits until every link holds the expected seqs.
func (w *Worker) expectAll(expect map[string]int64, timeout time.Duration) *control.Reply {
	rb := &control.Rebuild{}
	deadline := time.After(timeout)
	for _, c := range w.conns {
		if c == nil {
			continue
		}
		select {
		case <-c.awaitSeqs(expect):
		case <-deadline:
			rb.Behind++
		}
	}
	return &control.Reply{Rebuild: rb}
}

// cutLinks closes the given links' TCP connections (all if none given)
// without a close frame, all at once, and waits until they have ended.
func (w *Worker) cutLinks(idx []int) *control.Reply {
	var cs []*conn
	if len(idx) == 0 {
		for _, c := range w.conns {
			if c != nil {
				cs = append(cs, c)
			}
		}
	} else {
		for _, i := range idx {
			if c := w.link(i); c != nil {
				cs = append(cs, c)
			}
		}
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cutNow()
		}()
	}
	wg.Wait()
	return &control.Reply{Connected: len(cs)}
}

// rebuild reconnects every cut link after a uniform random delay in
// [0, jitter) and resumes its session; each link is then awaited until
// it holds the expected seqs. plain: a hello that resumes nothing.
func (w *Worker) rebuild(ctx context.Context, expect map[string]int64, jitter, timeout time.Duration, plain bool) *control.Reply {
	rb := &control.Rebuild{Refused: map[string]int{}, Failed: map[string]int{}}
	var confirm, caught histogram.Histogram
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(jitter + timeout)
	for _, c := range w.conns {
		if c == nil || !c.cut.Load() {
			continue
		}
		delay := time.Duration(0)
		if jitter > 0 {
			delay = time.Duration(rand.Int64N(int64(jitter)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(delay)))
			ready := c.awaitSeqs(expect)
			t0 := time.Now()
			resume := c.resume
			if plain {
				resume = c.reconnect
			}
			refused, confirmed, err := resume(ctx)
			mu.Lock()
			if rb.FirstDial == 0 || t0.UnixNano() < rb.FirstDial {
				rb.FirstDial = t0.UnixNano()
			}
			if err != nil {
				rb.Failed[reason(err)]++
				mu.Unlock()
				return
			}
			if refused != "" {
				rb.Refused[refused]++
			} else {
				rb.Rebuilt++
				confirm.Record(confirmed.Sub(t0))
			}
			c.mu.Lock()
			rb.SessionReplayed += c.replayed
			c.mu.Unlock()
			mu.Unlock()
			select {
			case <-ready:
				now := time.Now()
				caught.Record(now.Sub(t0))
				mu.Lock()
				rb.LastDone = max(rb.LastDone, now.UnixNano())
				mu.Unlock()
			case <-time.After(time.Until(deadline)):
				mu.Lock()
				rb.Behind++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rb.Confirm, rb.CaughtUp = confirm.Snapshot(), caught.Snapshot()
	return &control.Reply{Rebuild: rb}
}

// createChannel creates a channel from link i and adds members in batches
// that fit a frame.
func (w *Worker) createChannel(ctx context.Context, i int, title string, members []string) *control.Reply {
	c := w.link(i)
	if c == nil {
		return &control.Reply{Err: fmt.Sprintf("link %d is not open", i)}
	}
	res, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateChannel{CreateChannel: &pb.CreateChannel{Title: title}}})
	if err != nil {
		return &control.Reply{Err: "createChannel: " + err.Error()}
	}
	id := res.GetChannel().GetId()
	const batch = 1000
	for lo := 0; lo < len(members); lo += batch {
		hi := min(lo+batch, len(members))
		_, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_AddChannelMembers{AddChannelMembers: &pb.AddChannelMembers{ChannelId: id, UserIds: members[lo:hi]}}})
		if err != nil {
			return &control.Reply{Err: fmt.Sprintf("addChannelMembers %d..%d: %v", lo, hi, err)}
		}
	}
	return &control.Reply{Convs: []string{id}}
}

// join makes every link present in a channel.
func (w *Worker) join(ctx context.Context, channel string, concurrency int) *control.Reply {
	if concurrency < 1 {
		concurrency = 64
	}
	r := &control.Reply{Failures: map[string]int{}}
	var mu sync.Mutex
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, c := range w.conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_JoinChannel{JoinChannel: &pb.JoinChannel{ChannelId: channel}}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Failures[reason(err)]++
				return
			}
			r.Connected++
		}()
	}
	wg.Wait()
	return r
}
