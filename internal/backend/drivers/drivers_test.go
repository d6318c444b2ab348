package drivers_test

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/drivers"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
)

func TestNewBuildsTheNamedDriver(t *testing.T) {
	g := NewWithT(t)
	g.Expect(drivers.Names()).To(Equal([]string{"native", "zabbix"}))

	d, err := drivers.New(backend.Config{URL: "http://127.0.0.1:1/api/v3", Credential: "x"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d).To(BeAssignableToTypeOf(&native.Driver{}))

	cfg := backend.Config{Driver: drivers.Zabbix, URL: "http://127.0.0.1:1", Credential: "x", Settings: map[string]string{
		zabbix.SettingReadOnlyUser: "ro", zabbix.SettingFullAccessUser: "fa",
	}}
	d, err = drivers.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d).To(BeAssignableToTypeOf(&zabbix.Driver{}))

	cfg.Settings = nil
	_, err = drivers.New(cfg)
	g.Expect(err).To(MatchError(ContainSubstring(zabbix.SettingReadOnlyUser)))
	_, err = drivers.New(backend.Config{Driver: "vault"})
	g.Expect(err).To(MatchError(ContainSubstring(`unknown backend driver "vault"`)))
}
