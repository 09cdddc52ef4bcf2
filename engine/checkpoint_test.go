package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/internal/dirsnap"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/planpb"
)

func TestCheckpointLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	if err != nil {
		t.Fatal(err)
	}
	// Each state is checked as this process sees it and as a restart does,
	// which goes on with the checkpoint.
	recover := func() loop.Recovery {
		t.Helper()
		rec, err := c.recover()
		if err != nil {
			t.Fatal(err)
		}
		check(t, c.close())
		if c, err = openTestCheckpoint(dir, query("wc", "logs"), 4); err != nil {
			t.Fatal(err)
		}
		if rec2, err := c.recover(); err != nil || rec2.LastCommitted != rec.LastCommitted ||
			(rec2.Rerun == nil) != (rec.Rerun == nil) || rec2.End.String() != rec.End.String() {
			t.Fatalf("reopened: %+v, %v; this process: %+v", rec2, err, rec)
		}
		return rec
	}
	if rec := recover(); rec.LastCommitted != -1 || rec.Rerun != nil {
		t.Fatalf("new checkpoint: %+v", rec)
	}
	e0 := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{"logs": {0: 0}}, End: kafkasrc.Offsets{"logs": {0: 10}}}
	if err := c.writeOffsets(e0); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.Rerun == nil || rec.Rerun.BatchID != 0 || rec.End != nil {
		t.Fatalf("planned, not committed: %+v", rec)
	}
	if err := c.writeCommit(0); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.LastCommitted != 0 || rec.Rerun != nil || rec.End.String() != e0.End.String() {
		t.Fatalf("committed: %+v", rec)
	}
	e1 := offsetEntry{BatchID: 1, Start: e0.End, End: kafkasrc.Offsets{"logs": {0: 25}}}
	if err := c.writeOffsets(e1); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.LastCommitted != 0 || rec.Rerun.BatchID != 1 || rec.End.String() != e0.End.String() {
		t.Fatalf("re-run batch 1: %+v", rec)
	}
	// Out of order: the log refuses and stays as it was.
	for _, bad := range []error{c.writeOffsets(offsetEntry{BatchID: 2, Start: e1.End, End: e1.End}), c.writeCommit(0), c.writeCommit(2)} {
		if !errors.Is(bad, ErrCheckpoint) {
			t.Fatalf("out-of-order entry: %v, want ErrCheckpoint", bad)
		}
	}
	recover()
	// "commit N" and "offsets N+1" in one append: both or, out of order, neither.
	e2 := offsetEntry{BatchID: 2, Start: e1.End, End: kafkasrc.Offsets{"logs": {0: 40}}}
	if err := c.writeCommitAndOffsets(0, e2); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("commit 0 again with offsets 2: %v, want ErrCheckpoint", err)
	}
	if err := c.writeCommitAndOffsets(1, offsetEntry{BatchID: 3, Start: e1.End, End: e1.End}); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("commit 1 with offsets 3: %v, want ErrCheckpoint", err)
	}
	if rec := recover(); rec.LastCommitted != 0 || rec.Rerun.BatchID != 1 {
		t.Fatalf("after refused appends: %+v, want batch 1 to re-run", rec)
	}
	if err := c.writeCommitAndOffsets(1, e2); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.LastCommitted != 1 || rec.Rerun == nil || rec.Rerun.BatchID != 2 || rec.End.String() != e1.End.String() {
		t.Fatalf("commit 1 with offsets 2: %+v, want batch 1 committed and batch 2 to re-run", rec)
	}
	// Reopening keeps the identity and the shuffle partitions of the first start.
	id := c.meta.ID
	check(t, c.close())
	c2, err := openTestCheckpoint(dir, query("wc", "logs"), 9)
	if err != nil || c2.meta.ShufflePartitions != 4 || c2.meta.ID != id {
		t.Fatalf("reopen: %+v %v", c2.meta, err)
	}
	c2.close()
}

// TestCheckpointTornAppend cuts the last entry at every byte, as a crash in
// the middle of its write would: the checkpoint opens as if the entry had
// never been written.
func TestCheckpointTornAppend(t *testing.T) {
	dir := t.TempDir()
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 1)
	if err != nil {
		t.Fatal(err)
	}
	e0 := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{"logs": {0: 0}}, End: kafkasrc.Offsets{"logs": {0: 10}}}
	check(t, c.writeOffsets(e0))
	check(t, c.writeCommit(0))
	check(t, c.close())
	path := filepath.Join(dir, batchLogName)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := strings.LastIndex(strings.TrimSuffix(string(whole), "\n"), "\n") + 1
	for cut := lastStart; cut < len(whole); cut++ {
		torn := append([]byte(nil), whole[:cut]...)
		if cut > lastStart+12 {
			torn[cut-1] ^= 0x20 // a damaged byte in the torn entry
		}
		check(t, os.WriteFile(path, torn, 0o644))
		c, err := openTestCheckpoint(dir, query("wc", "logs"), 1)
		if err != nil {
			t.Fatalf("cut at %d of %d: %v", cut, len(whole), err)
		}
		if rec, err := c.recover(); err != nil || rec.Rerun == nil || rec.Rerun.BatchID != 0 || rec.LastCommitted != -1 {
			t.Fatalf("cut at %d of %d: %+v, %v; want batch 0 to re-run", cut, len(whole), rec, err)
		}
		check(t, c.writeCommit(0)) // appends after the cut
		check(t, c.close())
		if got, _ := os.ReadFile(path); string(got) != string(whole) {
			t.Fatalf("cut at %d: the log after the re-run commit is %q, want %q", cut, got, whole)
		}
	}
}

// TestCheckpointCompacts writes batches until the log is rewritten: it
// keeps the last retainBatches batches and goes on.
func TestCheckpointCompacts(t *testing.T) {
	dir := t.TempDir()
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 1)
	if err != nil {
		t.Fatal(err)
	}
	end := kafkasrc.Offsets{"logs": {0: 0}}
	const batches = compactAfter + 10
	for id := range int64(batches) {
		next := kafkasrc.Offsets{"logs": {0: 10 * (id + 1)}}
		check(t, c.writeOffsets(offsetEntry{BatchID: id, Start: end, End: next}))
		check(t, c.writeCommit(id))
		end = next
	}
	check(t, c.close())
	c, err = openTestCheckpoint(dir, query("wc", "logs"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if n := len(c.log.ents); n > 2*(compactAfter-retainBatches+10) || c.log.ents[0].batchID() < batches-compactAfter {
		t.Fatalf("after %d batches the log holds %d entries from batch %d", batches, n, c.log.ents[0].batchID())
	}
	if rec, err := c.recover(); err != nil || rec.LastCommitted != batches-1 || rec.End.String() != end.String() {
		t.Fatalf("after compaction: %+v, %v", rec, err)
	}
}

// TestCheckpointConvertsFormat1 opens a checkpoint written with one file
// per log entry, as gostream did before: it is converted, and resumes.
func TestCheckpointConvertsFormat1(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		check(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		check(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	write("metadata", `{"format":1,"id":"abc","name":"wc","planFingerprint":"`+fingerprint(query("wc", "logs").Plan)+`","shufflePartitions":3}`)
	write("offsets/6", "v1\n"+`{"batchId":6,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}`)
	write("commits/6", "v1\n"+`{"nextBatchWatermarkMs":0}`)
	write("offsets/7", "v1\n"+`{"batchId":7,"batchTimestampMs":2,"start":{"logs":{"0":5}},"end":{"logs":{"0":9}}}`)
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	rec, err := c.recover()
	if err != nil || rec.LastCommitted != 6 || rec.Rerun == nil || rec.Rerun.BatchID != 7 || rec.End.String() != `{"logs":{"0":5}}` {
		t.Fatalf("converted: %+v, %v; want batch 7 to re-run after 6", rec, err)
	}
	if c.meta.Format != checkpointFormat || c.meta.ShufflePartitions != 3 || c.meta.ID != "abc" {
		t.Fatalf("converted metadata: %+v", c.meta)
	}
	for _, old := range []string{"offsets", "commits"} {
		if _, err := os.Stat(filepath.Join(dir, old)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s/ left after the conversion: %v", old, err)
		}
	}
	check(t, c.writeCommit(7))
}

func TestCheckpointRefusesOtherQueryAndDamage(t *testing.T) {
	dir := t.TempDir()
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	if err != nil {
		t.Fatal(err)
	}
	e := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{}, End: kafkasrc.Offsets{}}
	check(t, c.writeOffsets(e))
	check(t, c.writeCommit(0))
	check(t, c.close())
	line := func(json string) string { return string(appendLine(nil, mustEntry(t, json))) }
	ok := line(`{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{},"end":{}}}`)
	log := filepath.Join(dir, batchLogName)
	whole, err := os.ReadFile(log)
	check(t, err)
	head := string(whole[:bytes.IndexByte(whole, '\n')+1]) // names the checkpoint
	cases := []struct {
		name   string
		damage func()
		query  string
		want   string
	}{
		{"different plan", func() {}, "other", "different query"},
		{"different name", func() {}, "", "different query"},
		{"negative offset", func() {
			body := `{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":-5}}}}`
			os.WriteFile(log, []byte(head+sumLine(body)+line(`{"commit":0}`)), 0o644)
		}, "logs", "line 2: kafka: invalid offsets JSON"},
		{"damaged entry", func() {
			os.WriteFile(log, []byte(head+strings.Replace(ok, `"batchId":0`, `"batchId":1`, 1)+line(`{"commit":0}`)), 0o644)
		}, "logs", "line 2: checksum mismatch"},
		{"commit before offsets", func() { os.WriteFile(log, []byte(head+line(`{"commit":0}`)+ok), 0o644) }, "logs", "line 2: batch 0 committed, the last planned being -1"},
		{"planned twice", func() { os.WriteFile(log, []byte(head+ok+ok), 0o644) }, "logs", "line 3: batch 0 planned after batch 0"},
		{"header after the first line", func() { os.WriteFile(log, []byte(head+ok+head), 0o644) }, "logs", "line 3: a checkpoint header after the first line"},
		{"no header", func() { os.WriteFile(log, []byte(ok+line(`{"commit":0}`)), 0o644) }, "logs", "its first line does not name the checkpoint"},
		{"missing log", func() { os.Remove(log) }, "logs", "batches: open"},
		{"damaged metadata", func() { os.WriteFile(filepath.Join(dir, "metadata"), []byte("{"), 0o644) }, "logs", "damaged: metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage()
			before, err := dirsnap.Take(dir)
			check(t, err)
			name := "wc"
			if tc.query == "" {
				name, tc.query = "other", "logs"
			}
			c, err := openTestCheckpoint(dir, query(name, tc.query), 4)
			if err == nil {
				c.close()
			}
			if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrCheckpoint mentioning %q", err, tc.want)
			}
			after, err := dirsnap.Take(dir)
			check(t, err)
			if d := before.Diff(after); len(d) > 0 {
				t.Fatalf("refused, but changed: %v", d)
			}
		})
	}
}

func mustEntry(t *testing.T, body string) logEntry {
	t.Helper()
	e, err := parseLogLine([]byte(strings.TrimSuffix(sumLine(body), "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sumLine returns the log line of a JSON body, with its checksum.
func sumLine(body string) string {
	return fmt.Sprintf("%08x %s\n", crc32.Checksum([]byte(body), castagnoli), body)
}

// query is a query named name that reads topic.
func query(name, topic string) *planpb.Query {
	scan := &planpb.KafkaScan{Subscribe: []string{topic}, BootstrapServers: "127.0.0.1:9092"}
	return &planpb.Query{Name: name, Plan: &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: scan}}}
}

// openTestCheckpoint opens dir as newRuntime does for a query without
// state: opened and checked, then resumed.
func openTestCheckpoint(dir string, q *planpb.Query, p int) (*checkpoint, error) {
	c, err := openCheckpoint(dir, q, p)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(c.resume(), c.finishUpgrade()); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	_, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "not a gostream checkpoint") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseBatchLog(f *testing.F) {
	f.Add([]byte(sumLine(`{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}}`) + sumLine(`{"commit":0}`)))
	f.Add([]byte("00000000 {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, ents, good, err := parseBatchLog(data)
		if err != nil {
			return
		}
		if good > len(data) {
			t.Fatalf("intact prefix %d of %d bytes", good, len(data))
		}
		for i, e := range ents {
			if (e.Offsets == nil) == (e.Commit == nil) || e.Offsets != nil && (e.Offsets.Start == nil || e.Offsets.End == nil) {
				t.Fatalf("entry %d accepted: %+v", i, e)
			}
		}
	})
}

// TestCheckpointLockHelper is not a test: TestCheckpointInUse runs the test
// binary with GOSTREAM_LOCK_HELPER set to a checkpoint directory, to open it
// from another process. The helper opens it once it reads a line on stdin,
// prints "opened" or "refused: " and the error, and holds the checkpoint
// until stdin closes.
func TestCheckpointLockHelper(t *testing.T) {
	dir := os.Getenv("GOSTREAM_LOCK_HELPER")
	if dir == "" {
		return
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	if err != nil {
		fmt.Printf("refused: %v\n", err)
		return
	}
	fmt.Println("opened")
	io.Copy(io.Discard, in)
	check(t, c.close())
}

// TestCheckpointInUse starts two processes on one checkpoint at the same
// moment, many times, on a new directory and on an existing checkpoint, in
// both orders: one opens it, the other is told which pid holds it, and
// never that the directory is not a checkpoint.
func TestCheckpointInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
	check(t, err)
	if _, err := openCheckpoint(dir, query("wc", "logs"), 4); !errors.Is(err, ErrCheckpoint) ||
		!strings.Contains(err.Error(), fmt.Sprintf("is in use by pid %d (this process", os.Getpid())) {
		t.Fatalf("second open in this process: %v", err)
	}
	check(t, c.close())

	type helper struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	start := func(dir string) helper {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointLockHelper$", "-test.short", "-test.count=1")
		cmd.Env = append(os.Environ(), "GOSTREAM_LOCK_HELPER="+dir)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		check(t, err)
		stdout, err := cmd.StdoutPipe()
		check(t, err)
		check(t, cmd.Start())
		return helper{cmd, stdin, bufio.NewReader(stdout)}
	}
	const rounds = 20
	for round := range rounds {
		dir := filepath.Join(t.TempDir(), "cp")
		if round%4 >= 2 { // an existing checkpoint
			c, err := openTestCheckpoint(dir, query("wc", "logs"), 4)
			check(t, err)
			check(t, c.close())
		}
		hs := []helper{start(dir), start(dir)}
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			_, err := io.WriteString(hs[i].stdin, "go\n")
			check(t, err)
		}
		var opened []int
		var refusals []string
		for i, h := range hs {
			line, err := h.out.ReadString('\n')
			check(t, err)
			if line == "opened\n" {
				opened = append(opened, i)
			} else {
				refusals = append(refusals, line)
			}
		}
		if len(opened) != 1 {
			t.Fatalf("round %d: %d processes opened the checkpoint; refusals: %q", round, len(opened), refusals)
		}
		want := fmt.Sprintf("refused: engine: checkpoint %s is in use by pid %d;", dir, hs[opened[0]].cmd.Process.Pid)
		if !strings.HasPrefix(refusals[0], want) {
			t.Fatalf("round %d: the second process got %q, want %q...", round, refusals[0], want)
		}
		for _, h := range hs {
			h.stdin.Close()
			check(t, h.cmd.Wait())
		}
	}
}

// TestCheckpointUpgradesFormat2 opens a checkpoint of the previous layout,
// whose batch log has no header: opening it changes nothing, resuming it
// writes the header and then the metadata in format 3, and it goes on.
func TestCheckpointUpgradesFormat2(t *testing.T) {
	dir := t.TempDir()
	q := query("wc", "logs")
	check(t, os.WriteFile(filepath.Join(dir, "metadata"),
		fmt.Appendf(nil, `{"format":2,"id":"abc","name":"wc","planFingerprint":%q,"shufflePartitions":3}`, fingerprint(q.Plan)), 0o644))
	check(t, os.WriteFile(filepath.Join(dir, batchLogName),
		[]byte(sumLine(`{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}}`)+sumLine(`{"commit":0}`)), 0o644))
	before, err := dirsnap.Take(dir)
	check(t, err)
	c, err := openCheckpoint(dir, q, 4)
	check(t, err)
	after, err := dirsnap.Take(dir)
	check(t, err)
	if d := before.Diff(after); len(d) > 0 {
		t.Fatalf("opening changed the checkpoint before it was resumed: %v", d)
	}
	check(t, errors.Join(c.resume(), c.finishUpgrade(), c.writeOffsets(offsetEntry{BatchID: 1, Start: kafkasrc.Offsets{"logs": {0: 5}}, End: kafkasrc.Offsets{"logs": {0: 7}}})))
	check(t, c.close())
	c, err = openTestCheckpoint(dir, q, 4)
	check(t, err)
	defer c.close()
	rec, err := c.recover()
	if err != nil || rec.LastCommitted != 0 || rec.Rerun == nil || rec.Rerun.BatchID != 1 {
		t.Fatalf("upgraded: %+v, %v; want batch 1 to re-run after 0", rec, err)
	}
	if m := c.meta; m.Format != checkpointFormat || m.ID != "abc" || m.ShufflePartitions != 3 || !slices.Equal(m.Plan, []string{"read topic logs"}) {
		t.Fatalf("upgraded metadata: %+v", m)
	}
	if h := c.log.head; h == nil || h.ID != "abc" || h.ShufflePartitions != 3 {
		t.Fatalf("upgraded batch log header: %+v", h)
	}
}

// TestDescribePlanDifferences checks that a checkpoint of another query
// says in words what differs.
func TestDescribePlanDifferences(t *testing.T) {
	wc := func(topic, pattern string, agg planpb.AggregateFunction) *planpb.Query {
		q := query("wc", topic)
		col := func(n string) *planpb.Expr { return &planpb.Expr{Kind: &planpb.Expr_Column{Column: n}} }
		str := func(s string) *planpb.Expr {
			return &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_String_{String_: s}}}}
		}
		value := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: q.Plan, Exprs: []*planpb.NamedExpr{
			{Expr: &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: col("value"), To: planpb.DataType_STRING}}}, Name: "value"}}}}}
		split := &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: "split", Args: []*planpb.Expr{col("value"), str(pattern)}}}}
		words := &planpb.Plan{Node: &planpb.Plan_Explode{Explode: &planpb.Explode{Input: value, Generator: split, Output: "word"}}}
		q.Plan = &planpb.Plan{Node: &planpb.Plan_Aggregate{Aggregate: &planpb.Aggregate{Input: words,
			GroupBy:    []*planpb.NamedExpr{{Expr: col("word"), Name: "word"}},
			Aggregates: []*planpb.AggregateExpr{{Function: agg, Name: "n"}}}}}
		return q
	}
	base := wc("logs", " ", planpb.AggregateFunction_COUNT)
	if got, want := describePlan(base.Plan), []string{"read topic logs", "select CAST(value AS STRING) AS value",
		"explode(split(value, ' ')) AS word", "group by word: count(*) AS n"}; !slices.Equal(got, want) {
		t.Fatalf("describePlan = %q, want %q", got, want)
	}
	for _, c := range []struct {
		q    *planpb.Query
		want string
	}{
		{wc("other", " ", planpb.AggregateFunction_COUNT), `its plan has "read topic logs" where this query has "read topic other"`},
		{wc("logs", ",", planpb.AggregateFunction_COUNT), `its plan has "explode(split(value, ' ')) AS word" where this query has "explode(split(value, ',')) AS word"`},
		{wc("logs", " ", planpb.AggregateFunction_MAX), `its plan has "group by word: count(*) AS n" where this query has "group by word: max(*) AS n"`},
		{query("wc", "logs"), `its plan is "read topic logs | select CAST(value AS STRING) AS value | explode(split(value, ' ')) AS word | group by word: count(*) AS n", this query's is "read topic logs"`},
	} {
		dir := t.TempDir()
		cp, err := openTestCheckpoint(dir, base, 4)
		check(t, err)
		check(t, cp.close())
		_, err = openCheckpoint(dir, c.q, 4)
		if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want it to say %s", err, c.want)
		}
	}
}
