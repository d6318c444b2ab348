// Package v1alpha1 contains the tokens.statusops.dev/v1alpha1 API: APIToken,
// StatusBackend and ClusterStatusBackend. It is the contract platform teams write in
// their GitOps repositories, so it imports only apimachinery and the Kubernetes API types.
// +kubebuilder:object:generate=true
// +groupName=tokens.statusops.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "tokens.statusops.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
