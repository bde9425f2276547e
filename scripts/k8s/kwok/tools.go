//go:build tools

// Package tools records the program `make tools` builds, so that `go mod tidy` keeps it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
