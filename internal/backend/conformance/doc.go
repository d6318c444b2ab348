// Package conformance holds the one table of behaviours every backend driver must show, run
// against each driver on a real server: the native driver on the reference server
// (internal/statusserver/servertest) and the Zabbix driver on a real Zabbix 6.0
// (internal/zabbixtest). A behaviour a driver lacks by design (claim without
// backend.CapabilityClaim) is skipped for it because of what it lists, never silently.
//
// The package has only tests: go test ./internal/backend/conformance/.
package conformance
