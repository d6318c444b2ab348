// Package monitoring holds only tests: see go.mod and rules_test.go.
package monitoring
