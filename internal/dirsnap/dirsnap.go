// Package dirsnap takes snapshots of directory trees for tests that must
// prove a directory was left exactly as it was: every file's path, size,
// mode and content hash, every directory's path and mode.
package dirsnap

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Snapshot maps the slash-separated path of each file and directory under
// the root, relative to it, to a description of it.
type Snapshot map[string]string

// Take snapshots the tree at root. A missing root is an empty snapshot.
func Take(root string) (Snapshot, error) {
	s := Snapshot{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root && os.IsNotExist(err) {
				return filepath.SkipAll
			}
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v", info.Mode())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += fmt.Sprintf(" %d bytes sha256 %s", len(b), hex.EncodeToString(sum[:8]))
		}
		s[filepath.ToSlash(rel)] = desc
		return nil
	})
	return s, err
}

// Diff lists how after differs from s: files and directories added,
// removed or changed, sorted by path.
func (s Snapshot) Diff(after Snapshot) []string {
	var d []string
	for p, was := range s {
		switch now, ok := after[p]; {
		case !ok:
			d = append(d, p+": removed")
		case now != was:
			d = append(d, fmt.Sprintf("%s: %s, was %s", p, now, was))
		}
	}
	for p, now := range after {
		if _, ok := s[p]; !ok {
			d = append(d, p+": added, "+now)
		}
	}
	slices.Sort(d)
	return d
}
