// Package drivers builds the driver a backend object names. It is the one place that knows
// every driver, so the port (internal/backend) and the controllers know none.
package drivers

import (
	"fmt"
	"slices"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
)

// Names of the drivers a backend object can ask for.
const (
	// Native is the driver of the operator's own HTTP protocol, the default.
	Native = "native"
	// Zabbix is the driver of Zabbix API tokens (settings: zabbix.SettingReadOnlyUser and
	// zabbix.SettingFullAccessUser).
	Zabbix = zabbix.DriverName
)

// factories are the drivers by name.
var factories = map[string]backend.Factory{
	Native: native.NewDriver,
	Zabbix: zabbix.NewDriver,
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
