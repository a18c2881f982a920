// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

package sandbox

import (
	"log/slog"
	"sync"
)

// AfterStartup, if not nil, is called once in each process that starts a
// container when its own part of the start-up is over: in stage 1 once the
// container's file system is mounted (stage 3 once the union is), in
// stage 2 and in the process that called [Run] once the payload runs, in
// one that called [Join] once the joined command runs. Set it before
// [Main]. cmd/husk holds its garbage collector back until then: a
// start-up's heap only grows, so collecting it is work spent on nothing,
// and on a small machine it competes with the start-up.
var AfterStartup func()

var startupOnce sync.Once

// startupOver calls AfterStartup, the first time only.
func startupOver(log *slog.Logger) {
	startupOnce.Do(func() {
		log.Debug("start-up over")
		if AfterStartup != nil {
			AfterStartup()
		}
	})
}
