package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Small disks for the disk-full fault class: every agent's DATA_DIR is its
// own tmpfs of Config.SmallDisk bytes, mounted before the agent first
// starts (so an agent in a network namespace, whose mount namespace is
// copied at launch, sees it too) and unmounted by Close. tmpfs needs no
// kernel feature beyond mount(2), but it needs root (CAP_SYS_ADMIN); the
// class then fails with that reason instead of running without the fault.
// The nemesis fills a disk with a filler file beside the agent's own files
// (fallocate, so the filesystem is full at once) and frees it by deleting
// the file.

const fillerName = "jepsen-disk-filler"

// mountSmallDisks mounts a tmpfs of size bytes on every agent's DATA_DIR.
func (c *Cluster) mountSmallDisks(size int64) error {
	for _, a := range c.Agents {
		if err := os.MkdirAll(a.DataDir, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount("tmpfs", a.DataDir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
			return fmt.Errorf("disk-full needs a small filesystem per agent: mount tmpfs on %s: %w (run as root)", a.DataDir, err)
		}
		c.mounted = append(c.mounted, a.DataDir)
	}
	return nil
}

// unmountSmallDisks undoes mountSmallDisks (agents must be stopped).
func (c *Cluster) unmountSmallDisks() {
	for _, d := range c.mounted {
		if err := syscall.Unmount(d, syscall.MNT_DETACH); err != nil {
			c.log.Warn("unmount small disk", "dir", d, "err", err)
		}
	}
	c.mounted = nil
}

// removeContents empties dir but keeps it (a mount point cannot be removed).
func removeContents(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// DiskFree is the free space of agent i's DATA_DIR filesystem.
func (c *Cluster) DiskFree(i int) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.Agents[i].DataDir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// FillDisk fills agent i's DATA_DIR filesystem until at most leave bytes
// are free (the agent keeps writing meanwhile, so it retries with smaller
// pieces when a piece no longer fits). It returns the bytes left free.
func (c *Cluster) FillDisk(i int, leave int64) (int64, error) {
	f, err := os.OpenFile(filepath.Join(c.Agents[i].DataDir, fillerName), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for tries := 0; tries < 64; tries++ {
		free, err := c.DiskFree(i)
		if err != nil {
			return 0, err
		}
		want := free - leave
		if want < 4096 {
			return free, nil
		}
		end, err := f.Seek(0, 2)
		if err != nil {
			return free, err
		}
		if err := syscall.Fallocate(int(f.Fd()), 0, end, want); err != nil && !errors.Is(err, syscall.ENOSPC) {
			return free, fmt.Errorf("fallocate %d bytes: %w", want, err)
		}
	}
	return c.DiskFree(i)
}

// FreeDisk deletes agent i's filler file.
func (c *Cluster) FreeDisk(i int) error {
	err := os.Remove(filepath.Join(c.Agents[i].DataDir, fillerName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
