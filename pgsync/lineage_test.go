package pgsync

import (
	"testing"
)

// Every restore from a database takes a generation above every earlier one
// and above the checkpoint's, also when a restore never finished.
func TestAllocateGenerationNeverRepeats(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := ctxT(t)
	seen := map[uint64]bool{}
	prev := uint64(0)
	for i, atLeast := range []uint64{0, 0, 7, 3, 7} {
		g, err := db.AllocateGeneration(ctx, atLeast)
		if err != nil {
			t.Fatal(err)
		}
		if g <= atLeast || g <= prev || seen[g] {
			t.Fatalf("allocation %d (at least %d) = %d after %d", i, atLeast, g, prev)
		}
		seen[g], prev = true, g
	}
	if _, err := db.WriteCheckpoint(ctx, fixture(t), cluster, node); err != nil {
		t.Fatal(err)
	}
	if g, err := db.AllocateGeneration(ctx, 2); err != nil || g <= prev {
		t.Fatalf("after a checkpoint: %d, %v", g, err)
	}
}
