// Copyright 2026 The husk Authors. SPDX-License-Identifier: Apache-2.0

//go:build !cgo || husk_purego

package squash

// Without cgo (or with -tags husk_purego) gzip blocks are decoded in Go;
// see deflate_cgo.go for why the default build does not.
func newZlibDecompressor() decompressor { return &zlibDecompressor{} }
