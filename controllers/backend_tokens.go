package controllers

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// backendTokens is status.tokens of each backend as a gauge, so that unmanaged tokens can be
// alerted on and graphed over time (a review that goes down to zero).
var backendTokens = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "apitoken_backend_tokens",
	Help: "Active tokens on a backend by who manages them (status.tokens): managed, unmanaged_active, unmanaged_full_access (a subset of unmanaged_active), other_clusters.",
}, []string{"kind", "namespace", "backend", "class"})

func init() {
	registerMetric(backendTokens)
}

// tokenCountClasses are the gauge's class label values, in status.tokens' order.
var tokenCountClasses = []string{"managed", "unmanaged_active", "unmanaged_full_access", "other_clusters"}

func setTokenCountGauges(key BackendKey, n *tokensv1alpha1.BackendTokenCounts) {
	for i, v := range []int32{n.Managed, n.UnmanagedActive, n.UnmanagedFullAccess, n.OtherClusters} {
		backendTokens.WithLabelValues(string(key.Kind), key.Namespace, key.Name, tokenCountClasses[i]).Set(float64(v))
	}
}

// forgetTokenCounts drops a deleted backend's series.
func forgetTokenCounts(key BackendKey) {
	for _, c := range tokenCountClasses {
		backendTokens.DeleteLabelValues(string(key.Kind), key.Namespace, key.Name, c)
	}
}

// ResolveClusterIdentity is this cluster's LabelCluster value: name (--cluster-name) when
// set, else the UID of the kube-system namespace, which every cluster has and which does not
// change while the cluster lives. A name must be a valid label value, so that it reads the
// same on every backend.
func ResolveClusterIdentity(ctx context.Context, reader client.Reader, name string) (string, error) {
	if name != "" {
		if errs := validation.IsValidLabelValue(name); len(errs) > 0 {
			return "", fmt.Errorf("--cluster-name %q: %s", name, strings.Join(errs, "; "))
		}
		return name, nil
	}
	var ns corev1.Namespace
	if err := reader.Get(ctx, types.NamespacedName{Name: metav1.NamespaceSystem}, &ns); err != nil {
		return "", fmt.Errorf("reading the kube-system namespace's UID, this cluster's identity on shared backends (or set --cluster-name): %w", err)
	}
	return string(ns.UID), nil
}
