// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

//go:build !race

package squash

const raceEnabled = false
