package backend

import "time"

// Config is what a driver is built from: a backend object's spec and its credential.
type Config struct {
	// Driver names the driver; "" is the native protocol.
	Driver string
	// URL is the backend's base URL as the backend object gives it.
	URL string
	// Credential is the backend's admin credential.
	Credential SecretValue
	// CABundle is a PEM bundle for https; when set, only these roots are trusted.
	CABundle []byte
	// Settings are the driver's own settings (for zabbix: the two users tokens are minted for).
	Settings map[string]string
	// Cluster is the identity of the operator's cluster (Owner.Cluster of the tokens it
	// creates). A driver that can keep only a digest of it on the backend reads its own
	// cluster's tokens back with this value, and another cluster's with another.
	Cluster string
	// Timeout bounds each request; zero is the driver's default.
	Timeout time.Duration
	// Observer, when set, is called after every request to the backend, for metrics: op is the
	// port operation (create, get, list, deactivate, claim, self, ping), code the HTTP status
	// (0 when no response arrived).
	Observer func(op string, code int, d time.Duration, err error)
}

// Factory builds a driver from a Config; the operator gets one from its composition root, and
// tests wrap it.
type Factory func(Config) (Driver, error)
