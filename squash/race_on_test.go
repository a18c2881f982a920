// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

//go:build race

package squash

// raceEnabled: the race detector's sync.Pool drops a quarter of what is
// put in it, on purpose.
const raceEnabled = true
