//go:build !unix

package main

// fixedStackStart: see stackstart_unix.go; elsewhere the runtime default.
func fixedStackStart() {}
