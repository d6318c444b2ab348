package statusbackend

import (
	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/metrics"
)

// tokenCountClasses are the gauge's class label values, in status.tokens' order.
var tokenCountClasses = []string{"managed", "unmanaged_active", "unmanaged_full_access", "other_clusters"}

func setTokenCountGauges(key backendkey.Key, n *tokensv1alpha1.BackendTokenCounts) {
	for i, v := range []int32{n.Managed, n.UnmanagedActive, n.UnmanagedFullAccess, n.OtherClusters} {
		metrics.BackendTokens.WithLabelValues(string(key.Kind), key.Namespace, key.Name, tokenCountClasses[i]).Set(float64(v))
	}
}

// forgetTokenCounts drops a deleted backend's series.
func forgetTokenCounts(key backendkey.Key) {
	for _, c := range tokenCountClasses {
		metrics.BackendTokens.DeleteLabelValues(string(key.Kind), key.Namespace, key.Name, c)
	}
}
