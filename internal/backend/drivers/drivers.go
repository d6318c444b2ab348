// Package drivers builds the driver a backend object names. It is the one place that knows
// every driver, so the port (internal/backend) and the controllers know none.
package drivers

import (
	"fmt"
	"slices"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// Native is the driver of the operator's own HTTP protocol, the default.
const Native = "native"

// factories are the drivers by name.
var factories = map[string]backend.Factory{
	Native: native.NewDriver,
}

// Names lists the drivers, sorted.
func Names() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New builds the driver cfg.Driver names ("" is Native); it is a backend.Factory.
func New(cfg backend.Config) (backend.Driver, error) {
	name := cfg.Driver
	if name == "" {
		name = Native
	}
	f, ok := factories[name]
	if !ok {
		return nil, fmt.Errorf("unknown backend driver %q (known: %v)", name, Names())
	}
	return f(cfg)
}
