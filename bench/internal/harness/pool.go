package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
)

// maxLinksPerWorker keeps a worker under the machine's limit of 20,000
// open files per process (links plus the process's own descriptors).
const maxLinksPerWorker = 19000

// pool is a set of worker processes (this binary in -worker mode), each
// opening its links from its own source address 127.0.0.(2+k).
type pool struct {
	workers []*workerProc
}

type workerProc struct {
	k   int
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	// done is closed when the process has exited.
	done chan struct{}
}

// startPool starts procs workers against url; gomaxprocs > 0 sets each
// worker's GOMAXPROCS.
func startPool(self, url string, procs, gomaxprocs int) (*pool, error) {
	if procs > 250 {
		return nil, fmt.Errorf("at most 250 worker processes (one source address each)")
	}
	p := &pool{}
	for k := range procs {
		w, err := startWorker(self, url, k, gomaxprocs)
		if err != nil {
			p.close()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

func startWorker(self, url string, k, gomaxprocs int) (*workerProc, error) {
	src := "127.0.0." + strconv.Itoa(2+k)
	cmd := exec.Command(self, "-worker", "-url", url, "-src", src)
	cmd.Env = cleanEnv()
	if gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(gomaxprocs))
	}
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %d: %w", k, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	w := &workerProc{k: k, cmd: cmd, in: in, out: sc, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// do sends one command and reads its reply.
func (w *workerProc) do(cmd control.Command) (*control.Reply, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("worker %d: %s: %w", w.k, cmd.Op, err)
	}
	if !w.out.Scan() {
		return nil, fmt.Errorf("worker %d: %s: no reply (exited? %v)", w.k, cmd.Op, w.out.Err())
	}
	var r control.Reply
	if err := json.Unmarshal(w.out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("worker %d: bad reply: %w", w.k, err)
	}
	if r.Err != "" {
		return &r, fmt.Errorf("worker %d: %s: %s", w.k, cmd.Op, r.Err)
	}
	return &r, nil
}

// each sends cmdFor(k) to every worker at once and gathers the replies.
func (p *pool) each(cmdFor func(k int) control.Command) ([]*control.Reply, error) {
	replies := make([]*control.Reply, len(p.workers))
	errs := make([]error, len(p.workers))
	var wg sync.WaitGroup
	for k, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[k], errs[k] = w.do(cmdFor(k))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return replies, err
		}
	}
	return replies, nil
}

// all sends the same command to every worker.
func (p *pool) all(op string) error {
	_, err := p.each(func(int) control.Command { return control.Command{Op: op} })
	return err
}

// stats merges every worker's statistics.
func (p *pool) stats() (*control.Stats, error) {
	rs, err := p.each(func(int) control.Command { return control.Command{Op: control.OpStats} })
	if err != nil {
		return nil, err
	}
	total := &control.Stats{}
	for _, r := range rs {
		total.Add(r.Stats)
	}
	return total, nil
}

// cpu is the CPU time all workers have used.
func (p *pool) cpu() time.Duration {
	var total time.Duration
	for _, w := range p.workers {
		if d, err := cpuTime(w.cmd.Process.Pid); err == nil {
			total += d
		}
	}
	return total
}

// close asks every worker to exit, killing those that do not within 30s.
func (p *pool) close() {
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				_, _ = w.do(control.Command{Op: control.OpExit})
				_ = w.in.Close()
			}()
			select {
			case <-w.done:
			case <-time.After(30 * time.Second):
				_ = w.cmd.Process.Kill()
				<-w.done
			}
		}()
	}
	wg.Wait()
	p.workers = nil
}

// placement says where a global link index lives: worker k, local index i.
type placement struct{ k, i int }

// split assigns n links to procs workers in contiguous blocks and returns
// each worker's global range [lo, hi) and a lookup of any global index.
func split(n, procs int) (ranges [][2]int, where func(g int) placement) {
	ranges = make([][2]int, procs)
	for k := range procs {
		ranges[k] = [2]int{k * n / procs, (k + 1) * n / procs}
	}
	where = func(g int) placement {
		for k, r := range ranges {
			if g >= r[0] && g < r[1] {
				return placement{k: k, i: g - r[0]}
			}
		}
		return placement{k: -1, i: -1}
	}
	return ranges, where
}
