// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package squash

import "testing"

func TestOptionsBudgets(t *testing.T) {
	const mib = 1 << 20
	const d = DefaultMemoryBytes
	def := budgets{d / 2, d / 4, d / 8, d / 8, DefaultReadahead, d / 4}
	tests := []struct {
		name string
		opts *Options
		want budgets
	}{
		{"nil", nil, def},
		{"total", &Options{MemoryBytes: 64 * mib},
			budgets{32 * mib, 16 * mib, 8 * mib, 8 * mib, DefaultReadahead, 8 * mib}},
		{"explicit caches", &Options{CacheBytes: 3 * mib, MetaCacheBytes: 5 * mib},
			budgets{3 * mib, 5 * mib, d / 8, d / 8, DefaultReadahead, 3 * mib / 2}},
		{"tiny", &Options{MemoryBytes: 1, Readahead: -1},
			budgets{minCacheBytes, minCacheBytes, minCacheBytes, minCacheBytes, 0,
				minCacheBytes / 2}},
		{"readahead", &Options{Readahead: 7},
			budgets{d / 2, d / 4, d / 8, d / 8, 7, d / 4}},
		{"no prefetch", &Options{Prefetch: -1},
			budgets{d / 2, d / 4, d / 8, d / 8, DefaultReadahead, -1}},
		{"prefetch", &Options{Prefetch: 2 * mib},
			budgets{d / 2, d / 4, d / 8, d / 8, DefaultReadahead, 2 * mib}},
	}
	for _, tt := range tests {
		if got := tt.opts.budgets(); got != tt.want {
			t.Errorf("%s: budgets %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestCachesStayInBudget walks and reads the whole feature tree with a
// small memory budget and checks no cache holds more than its share.
func TestCachesStayInBudget(t *testing.T) {
	opts := &Options{MemoryBytes: 2 << 20}
	f := openImage(t, image(t), opts)
	if err := walkFS(f); err != nil {
		t.Fatal(err)
	}
	b := opts.budgets()
	check := func(name string, used, budget int64) {
		if used > budget {
			t.Errorf("%s cache holds %d bytes, budget %d", name, used, budget)
		}
		if used == 0 {
			t.Errorf("%s cache is empty after a walk", name)
		}
	}
	check("data", f.data.used(), b.data)
	check("meta", f.meta.used(), b.meta)
	check("inode", f.inodes.used(), b.inodes)
	check("dir", f.dirs.used(), b.dirs)
}
