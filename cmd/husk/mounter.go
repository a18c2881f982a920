package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"

	"github.com/husk-project/husk/cmd/internal/image"
)

// corruptImage adds the image names to an input/output error from the
// sandbox: the stages report errors as text, and an EIO while the mounts
// are set up (lstat of a mount point, say) is the union failing to read
// a damaged image.
func corruptImage(err error, planJSON []byte) error {
	if err == nil || !strings.Contains(err.Error(), syscall.EIO.Error()) {
		return err
	}
	names := imageNames(planJSON)
	if names == "" {
		return err
	}
	return fmt.Errorf("%w: %s is likely corrupt", err, names)
}

// imageNames lists the image files of a layer plan, "path" or "path
// (partition N)", comma-separated; directories are left out.
func imageNames(planJSON []byte) string {
	var plan image.Plan
	if json.Unmarshal(planJSON, &plan) != nil {
		return ""
	}
	layers := plan.Lowers
	if plan.Upper != nil {
		layers = append([]image.Layer{*plan.Upper}, layers...)
	}
	var names []string
	seen := map[string]bool{}
	for _, l := range layers {
		if l.File < 0 || l.Path == "" {
			continue
		}
		n := l.Path
		if l.Section.ID != 0 {
			n = fmt.Sprintf("%s (partition %d)", l.Path, l.Section.ID)
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}
