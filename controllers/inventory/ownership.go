package inventory

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelledForOtherCluster: the token carries another cluster's identity. Such a token is
// never deactivated as an orphan, adopted, or counted as this cluster's.
func LabelledForOtherCluster(tokenCluster, cluster string) bool {
	return tokenCluster != "" && tokenCluster != cluster
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
