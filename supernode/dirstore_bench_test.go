package supernode

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// benchRecord is a record as a peer puts it: attached to three supernodes,
// reachable at two addresses.
func benchRecord(b *testing.B, id *protocol.Identity, name string, seq uint64, exp time.Time) *protocol.UserRecord {
	r := &protocol.UserRecord{Name: name, Seq: seq, Expires: exp.Unix(), NAT: protocol.NATEndpointIndependent,
		Supernodes: []protocol.PeerID{id.ID, id.ID, id.ID}, Addrs: []string{"203.0.113.45:51234", "[2001:db8::1]:51234"}}
	r.Sign(id)
	return r
}

// benchRecords signs n records of one key: names cycle through 100,000, so
// the directory stays under its cap, and a name seen again is an update.
func benchRecords(b *testing.B, n int) []*protocol.UserRecord {
	id := storeIdentity(b)
	exp := time.Now().Add(time.Hour)
	recs := make([]*protocol.UserRecord, n)
	for i := range recs {
		recs[i] = benchRecord(b, id, fmt.Sprintf("user%06d", i%100_000), uint64(i/100_000+1), exp)
	}
	return recs
}

// BenchmarkDirStorePut is puts/s into the file at the defaults, as many
// links put at once: each put waits for its fsync, and the writer covers
// all waiting puts with one. The directory is on the test's temporary
// directory: set TMPDIR to measure another disk.
func BenchmarkDirStorePut(b *testing.B) {
	for _, par := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("waiting=%d", par), func(b *testing.B) {
			recs := benchRecords(b, b.N)
			st, err := openDirStore(b.TempDir(), 1, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer st.close()
			next := make(chan *protocol.UserRecord, len(recs))
			for _, r := range recs {
				next <- r
			}
			close(next)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < par; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					done := make(chan error, 1)
					for r := range next {
						st.put(r, true, func(_ bool, err error) { done <- err })
						if err := <-done; err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
			b.ReportMetric(float64(st.Stats.Written.Load())/float64(max(1, st.Stats.Commits.Load())), "records/commit")
		})
	}
}

// BenchmarkDirStoreOpen is the time from opening a file with 200,000 live
// records (the cap) to serving them, and the file's bytes per record.
func BenchmarkDirStoreOpen(b *testing.B) {
	dir := b.TempDir()
	st, err := openDirStore(dir, 1, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	id := storeIdentity(b)
	exp := time.Now().Add(time.Hour)
	const n = maxUserRecords
	var wg sync.WaitGroup
	for i := 0; i < n; i += protocol.MaxUserRecords {
		var recs []*protocol.UserRecord
		for j := i; j < min(n, i+protocol.MaxUserRecords); j++ {
			recs = append(recs, benchRecord(b, id, fmt.Sprintf("user%06d", j), 1, exp))
		}
		wg.Add(1)
		for st.copies(recs, func([]*protocol.UserRecord) { wg.Done() }) != nil {
			time.Sleep(time.Millisecond) // the queue is full: let the writer catch up
		}
	}
	wg.Wait()
	if got := st.users.Len(); got != n {
		b.Fatalf("%d records stored, want %d", got, n)
	}
	st.close()
	size := st.fileSize()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := openDirStore(dir, 1, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		if got := st.users.Len(); got != n {
			b.Fatalf("%d records loaded, want %d", got, n)
		}
		st.close()
	}
	b.ReportMetric(float64(size)/n, "file-bytes/record")
}
