package v1alpha1_test

import (
	"testing"

	. "github.com/onsi/gomega"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/drivers"
)

// TestDriverAndCapabilityNamesMatchTheBackendPort: status.driver and status.capabilities
// report the names internal/backend uses. api/ imports no internal package, so its constants
// are written out; this test (outside the package) keeps them equal. A driver registered in
// internal/backend/drivers without a name here fails it: add the constant and the provider
// field with it.
func TestDriverAndCapabilityNamesMatchTheBackendPort(t *testing.T) {
	g := NewWithT(t)
	g.Expect(tokensv1alpha1.DriverNative).To(Equal(drivers.Native))
	g.Expect(drivers.Names()).To(HaveEach(BeElementOf(tokensv1alpha1.DriverNative, tokensv1alpha1.DriverZabbix)))

	var port []string
	for _, c := range backend.AllCapabilities {
		port = append(port, string(c))
	}
	g.Expect(port).To(ConsistOf(tokensv1alpha1.CapabilityUsage, tokensv1alpha1.CapabilityClaim, tokensv1alpha1.CapabilityUpdatedSince))
	g.Expect(tokensv1alpha1.CapabilityUsage).To(Equal(string(backend.CapabilityUsage)))
	g.Expect(tokensv1alpha1.CapabilityClaim).To(Equal(string(backend.CapabilityClaim)))
	g.Expect(tokensv1alpha1.CapabilityUpdatedSince).To(Equal(string(backend.CapabilityUpdatedSince)))
}
