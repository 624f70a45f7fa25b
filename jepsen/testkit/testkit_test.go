package testkit

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestWaitForSeesConditionBecomeTrue(t *testing.T) {
	var n atomic.Int64
	WaitFor(t, 5*time.Second, "three polls", func() bool { return n.Add(1) >= 3 })
	if got := n.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3", got)
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

func TestWaitForFailsAfterDeadline(t *testing.T) {
	r := &fatalRecorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		WaitFor(r, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if r.msg != "timed out after 30ms waiting for never" {
		t.Fatalf("message %q", r.msg)
	}
}

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}

// TestImportsNoProductPackage: testkit and the launcher import nothing from
// this module, so every package's tests can import them without a cycle.
func TestImportsNoProductPackage(t *testing.T) {
	const module = "github.com/streamhouse/streamhouse/"
	for _, pkg := range []string{module + "jepsen/testkit", module + "jepsen/proc"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, module) && dep != pkg {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}

func TestSameIDs(t *testing.T) {
	for _, c := range []struct {
		got, want []string
		same      bool
	}{
		{[]string{"b", "a"}, []string{"a", "b"}, true},
		{nil, nil, true},
		{[]string{"a"}, []string{"a", "a"}, false},
		{[]string{"a", "b"}, []string{"a", "c"}, false},
	} {
		if got := SameIDs(c.got, c.want...); got != c.same {
			t.Errorf("SameIDs(%v, %v) = %v", c.got, c.want, got)
		}
	}
}
