package control

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// clockOffsetEnv is the agent's clock test hook (cmd/streamhouse
// testhooks.go): its wall clock is shifted by the duration in this file.
const clockOffsetEnv = "STREAMHOUSE_TEST_CLOCK_OFFSET_FILE"

// ClockFile is agent i's clock-offset file. It lives beside the data dir,
// so it survives kills and wipes.
func (c *Cluster) ClockFile(i int) string {
	return filepath.Join(filepath.Dir(c.Agents[i].DataDir), "clock-offset")
}

// SetClockOffset shifts agent i's wall clock by d (0: none), at once for a
// running agent (it re-reads the file within 100 ms) and for its next
// launches.
func (c *Cluster) SetClockOffset(i int, d time.Duration) error {
	path := c.ClockFile(i)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()), 0o644); err != nil {
		return fmt.Errorf("clock offset of %s: %w", c.Agents[i].ID, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("clock offset of %s: %w", c.Agents[i].ID, err)
	}
	return nil
}

func clockEnv(agentDataDir string) string {
	return clockOffsetEnv + "=" + filepath.Join(filepath.Dir(agentDataDir), "clock-offset")
}
