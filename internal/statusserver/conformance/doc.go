// Package conformance holds the protocol conformance suite (in its tests): it
// checks a status backend through raw HTTP only. By default it runs against an
// in-process reference server; set CONFORMANCE_BASE_URL (ending in /api/v3)
// and CONFORMANCE_ADMIN_TOKEN to check another server. Checks that need a
// controllable clock, a restart or the data file are skipped then. The
// extensions' checks run for the features GET /ping lists; in process they
// also run against a server with each feature switched off.
package conformance
