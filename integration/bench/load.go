package main

import (
	"bufio"
	"errors"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram in microseconds: exact below 64 µs,
// then 32 buckets per power of two (about 3 % relative error).
type hist struct {
	c   [64 + 41*32]uint64
	n   uint64
	max uint64
}

func histBucket(us uint64) int {
	if us < 64 {
		return int(us)
	}
	if us >= 1<<46 {
		us = 1<<46 - 1
	}
	s := bits.Len64(us) - 6
	return 64 + (s-1)*32 + int(us>>s-32)
}

func histValue(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	s := (i-64)/32 + 1
	m := uint64((i-64)%32 + 32)
	return m<<s + 1<<(s-1) // bucket midpoint
}

func (h *hist) record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.c[histBucket(us)]++
	h.n++
	if us > h.max {
		h.max = us
	}
}

func (h *hist) merge(o *hist) {
	for i, v := range o.c {
		h.c[i] += v
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1), or 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, v := range h.c {
		cum += v
		if cum >= rank {
			return time.Duration(min(histValue(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// loadOpts describes one run of the load generator against one target.
type loadOpts struct {
	addr     string        // host:port
	path     string        // request path
	conns    int           // keep-alive connections, one goroutine each
	duration time.Duration // issue requests for this long
	total    int64         // or, when set, this many requests (at most for duration if set)
	timeout  time.Duration // per request, like the provider's 10 s
	dup      float64       // fraction of requests that redeliver an earlier envelope
	key      []byte        // HMAC key
	ids      *idSource
	// sign, when set, gives worker w the function that writes its
	// webhook-signature values (instead of v1 under key).
	sign func(w int) sigFunc
	// expect is the status that counts as the expected answer (e.g. 401 for
	// requests meant to be rejected); 0 means any 2xx. expectAlso, when not
	// 0, counts too (e.g. 503 for a rejection the server did not even check).
	// Other statuses are errors.
	expect, expectAlso int
}

// idSource hands out envelope numbers, unique within a run of the benchmark.
type idSource struct {
	run    string
	evTime time.Time
	next   atomic.Int64
}

type loadResult struct {
	sent     int64
	ok       int64 // 2xx, or the expected status (loadOpts.expect)
	accepted int64 // 202
	dups     int64 // 200 (duplicate)
	errs     int64 // non-2xx or transport error
	timeouts int64 // no answer within timeout
	netErrs  int64 // dial/read/write failures other than timeouts
	status   map[int]int64
	lat      hist // latency of the expected answers
	wall     time.Duration
	firstErr string
}

func (r *loadResult) rps() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.ok) / r.wall.Seconds()
}

func (r *loadResult) merge(o *loadResult) {
	r.sent += o.sent
	r.ok += o.ok
	r.accepted += o.accepted
	r.dups += o.dups
	r.errs += o.errs
	r.timeouts += o.timeouts
	r.netErrs += o.netErrs
	if r.status == nil {
		r.status = map[int]int64{}
	}
	for k, v := range o.status {
		r.status[k] += v
	}
	r.lat.merge(&o.lat)
	r.wall += o.wall
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

// runLoad drives o.conns keep-alive HTTP/1.1 connections, each sending one
// freshly signed envelope at a time, and waits for the last answer.
func runLoad(o loadOpts) *loadResult {
	var (
		stop   atomic.Bool
		issued atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		total  = &loadResult{status: map[int]int64{}}
	)
	start := time.Now()
	if o.duration > 0 { // with total set too, whichever comes first
		t := time.AfterFunc(o.duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := loadWorker(o, w, &stop, &issued)
			mu.Lock()
			total.merge(r)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	total.wall = time.Since(start)
	return total
}

func loadWorker(o loadOpts, w int, stop *atomic.Bool, issued *atomic.Int64) *loadResult {
	res := &loadResult{status: map[int]int64{}}
	var sign sigFunc
	if o.sign != nil {
		sign = o.sign(w)
	}
	b := newEnvBuilder(o.addr, o.path, o.ids.run, o.key, o.ids.evTime, sign)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
	var (
		ring  [256]int64
		ringN int
		conn  net.Conn
		br    *bufio.Reader
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	fail := func(err error) {
		res.errs++
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
			res.timeouts++
		} else {
			res.netErrs++
		}
		if res.firstErr == "" {
			res.firstErr = err.Error()
		}
	}
	for !stop.Load() {
		if o.total > 0 && issued.Add(1) > o.total {
			break
		}
		var n int64
		if o.dup > 0 && ringN > 0 && rng.Float64() < o.dup {
			n = ring[rng.IntN(min(ringN, len(ring)))]
		} else {
			n = o.ids.next.Add(1)
			ring[ringN%len(ring)] = n
			ringN++
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", o.addr, 5*time.Second)
			if err != nil {
				res.sent++
				fail(err)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 4096)
		}
		now := time.Now()
		req := b.request(n, now)
		conn.SetDeadline(now.Add(o.timeout))
		res.sent++
		_, err := conn.Write(req)
		var status int
		var closeConn bool
		if err == nil {
			status, closeConn, err = readResponse(br)
		}
		lat := time.Since(now)
		if err != nil {
			fail(err)
			conn.Close()
			conn = nil
			continue
		}
		res.status[status]++
		if o.expect == 0 && status >= 200 && status < 300 || o.expect != 0 && status == o.expect || o.expectAlso != 0 && status == o.expectAlso {
			res.ok++
			res.lat.record(lat)
			switch status {
			case http.StatusAccepted:
				res.accepted++
			case http.StatusOK:
				res.dups++
			}
		} else {
			res.errs++
		}
		if closeConn {
			conn.Close()
			conn = nil
		}
	}
	return res
}

// readResponse reads one HTTP/1.1 response and discards its body.
func readResponse(br *bufio.Reader) (status int, closeConn bool, err error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, true, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Close, err
}

// sendOne sends the next envelope, signed with v1 under key, on a fresh
// connection and returns the status.
func sendOne(addr, path string, key []byte, ids *idSource, timeout time.Duration) (int, error) {
	status, _, err := sendSigned(addr, path, ids, newSigner(key).appendSignature, timeout)
	return status, err
}

// sendSigned sends the next envelope, its webhook-signature written by sign,
// on a fresh connection and returns the status and the time from the write
// to the end of the answer.
func sendSigned(addr, path string, ids *idSource, sign sigFunc, timeout time.Duration) (int, time.Duration, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	b := newEnvBuilder(addr, path, ids.run, nil, ids.evTime, sign)
	now := time.Now()
	conn.SetDeadline(now.Add(timeout))
	if _, err := conn.Write(b.request(ids.next.Add(1), now)); err != nil {
		return 0, 0, err
	}
	status, _, err := readResponse(bufio.NewReader(conn))
	return status, time.Since(now), err
}
