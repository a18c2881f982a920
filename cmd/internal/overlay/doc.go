// Package overlay implements `husk overlay create`: a journaled ext3 image
// with Apptainer's overlay layout (upper/ and work/ at the root), written in
// Go with ext3.Mkfs, either as a bare file of mode 0600 or appended to an
// existing SIF as an Ext3/Overlay partition in the root filesystem's group
// (COMPAT §2).
//
// Differences from Apptainer: no mkfs.ext3, dd or truncate is run, and
// --fakeroot does not re-execute in a user namespace; it only records
// upper/ and work/ as owned by 0:0, which is what the re-execution achieves.
// The --tmpdir flag has no use because nothing is staged on disk.
package overlay
