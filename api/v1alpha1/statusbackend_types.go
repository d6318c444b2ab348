package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialsSecretReference points at the key of a Secret holding a FullAccess admin token of the backend.
type CredentialsSecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Namespace of the Secret.
	// Required for a ClusterStatusBackend; a StatusBackend always uses its own namespace and ignores this field.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Key in the Secret's data that holds the token.
	// +kubebuilder:default=token
	// +kubebuilder:validation:MinLength=1
	// +optional
	Key string `json:"key,omitempty"`
}

// StatusBackendSpec says where a status backend is and how to authenticate to it.
type StatusBackendSpec struct {
	// URL is the backend's base URL, for example https://status.example.com/api/v3.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// CredentialsSecretRef names the Secret key holding a FullAccess token of the backend, used to issue and deactivate tokens.
	// +required
	CredentialsSecretRef CredentialsSecretReference `json:"credentialsSecretRef"`

	// CABundle is a PEM bundle of certificate authorities to trust for an https URL signed by a private CA.
	// Unset means the system roots.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// FullAccessNamespaces selects, by label, the namespaces whose APITokens may request FullAccess tokens from this backend.
	// Unset allows every namespace that may use the backend.
	// A FullAccess APIToken outside it fails with reason PermissionNotAllowed, and a token it already holds is deactivated.
	// +optional
	FullAccessNamespaces *metav1.LabelSelector `json:"fullAccessNamespaces,omitempty"`

	// RetainNamespaces selects, by label, the namespaces whose APITokens may use deletionPolicy: Retain for ReadOnly tokens: deleting such an APIToken leaves its token active, managed by nobody.
	// Unset allows every namespace that may use the backend.
	// An APIToken outside it that asks for Retain reports Ready=False with reason RetainNotAllowed, and its deletion waits until spec.deletionPolicy is Revoke.
	// +optional
	RetainNamespaces *metav1.LabelSelector `json:"retainNamespaces,omitempty"`

	// RetainFullAccessNamespaces selects, by label, the namespaces whose FullAccess tokens may be retained (deletionPolicy: Retain).
	// Unset allows none: a retained FullAccess token is a permanent credential that no policy of this backend reaches any more.
	// +optional
	RetainFullAccessNamespaces *metav1.LabelSelector `json:"retainFullAccessNamespaces,omitempty"`
}

// ClusterStatusBackendSpec is a StatusBackendSpec usable from many namespaces.
type ClusterStatusBackendSpec struct {
	StatusBackendSpec `json:",inline"`

	// AllowedNamespaces selects, by label, the namespaces whose APITokens may use this backend.
	// Unset allows every namespace.
	// +optional
	AllowedNamespaces *metav1.LabelSelector `json:"allowedNamespaces,omitempty"`
}

// StatusBackendStatus is what the operator observed of a backend.
type StatusBackendStatus struct {
	// ObservedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// LastCheckedAt is when the credential was last checked with GET /ping.
	// +optional
	LastCheckedAt *metav1.Time `json:"lastCheckedAt,omitempty"`

	// Conditions: Ready is True after a successful GET /ping with the credential.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Tokens counts the backend's active tokens by who manages them, from the operator's last inventory of the backend (refreshed once per sync interval), so that tokens which existed before the operator show up for review.
	// Unset until the first inventory.
	// +optional
	Tokens *BackendTokenCounts `json:"tokens,omitempty"`
}

// LabelCluster is put on every backend token the operator creates; its value is the cluster's
// identity (the kube-system namespace UID, or --cluster-name). Clusters sharing one backend
// account tell their tokens apart by it: a token labelled with another cluster's identity is
// counted as otherClusters and never deactivated as an orphan or adopted here.
const LabelCluster = "tokens.statusops.dev/cluster"

// BackendTokenCounts counts a backend's active tokens. The backend's admin tokens (the
// operator's own credential among them) are not counted: they can be neither managed nor adopted.
type BackendTokenCounts struct {
	// Managed is the number of active tokens that an APIToken of this cluster holds (its UID is the token's external_id).
	// +kubebuilder:validation:Minimum=0
	Managed int32 `json:"managed"`

	// UnmanagedActive is the number of active tokens that no APIToken manages: made by hand or by another tool, or left active by a deleted APIToken (deletionPolicy Retain).
	// Adopt them (spec.adopt) or deactivate them.
	// +kubebuilder:validation:Minimum=0
	UnmanagedActive int32 `json:"unmanagedActive"`

	// UnmanagedFullAccess is how many of UnmanagedActive have full access: the first to review.
	// +kubebuilder:validation:Minimum=0
	UnmanagedFullAccess int32 `json:"unmanagedFullAccess"`

	// OtherClusters is the number of active tokens that belong to another cluster sharing this backend: labelled with another cluster's identity, or owned (external_id set) by no APIToken of this cluster and not labelled with this cluster's identity.
	// The operator never touches them.
	// +kubebuilder:validation:Minimum=0
	OtherClusters int32 `json:"otherClusters"`
}

// StatusBackend is a status backend usable by the APITokens of its own namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=statusops
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Managed",type=integer,JSONPath=`.status.tokens.managed`,priority=1
// +kubebuilder:printcolumn:name="Unmanaged",type=integer,JSONPath=`.status.tokens.unmanagedActive`,priority=1
// +kubebuilder:printcolumn:name="Unmanaged FullAccess",type=integer,JSONPath=`.status.tokens.unmanagedFullAccess`,priority=1
// +kubebuilder:printcolumn:name="Other Clusters",type=integer,JSONPath=`.status.tokens.otherClusters`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type StatusBackend struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says where the backend is and how to authenticate.
	// +required
	Spec StatusBackendSpec `json:"spec"`

	// Status is what the operator observed.
	// +optional
	Status StatusBackendStatus `json:"status,omitempty"`
}

// StatusBackendList is a list of StatusBackends.
// +kubebuilder:object:root=true
type StatusBackendList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the StatusBackends.
	Items []StatusBackend `json:"items"`
}

// ClusterStatusBackend is a status backend usable by APITokens in every allowed namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=statusops
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Managed",type=integer,JSONPath=`.status.tokens.managed`,priority=1
// +kubebuilder:printcolumn:name="Unmanaged",type=integer,JSONPath=`.status.tokens.unmanagedActive`,priority=1
// +kubebuilder:printcolumn:name="Unmanaged FullAccess",type=integer,JSONPath=`.status.tokens.unmanagedFullAccess`,priority=1
// +kubebuilder:printcolumn:name="Other Clusters",type=integer,JSONPath=`.status.tokens.otherClusters`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec.credentialsSecretRef.__namespace__) && self.spec.credentialsSecretRef.__namespace__.size() > 0",message="spec.credentialsSecretRef.namespace is required for a ClusterStatusBackend"
type ClusterStatusBackend struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says where the backend is, how to authenticate and who may use it.
	// +required
	Spec ClusterStatusBackendSpec `json:"spec"`

	// Status is what the operator observed.
	// +optional
	Status StatusBackendStatus `json:"status,omitempty"`
}

// ClusterStatusBackendList is a list of ClusterStatusBackends.
// +kubebuilder:object:root=true
type ClusterStatusBackendList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the ClusterStatusBackends.
	Items []ClusterStatusBackend `json:"items"`
}

func init() {
	SchemeBuilder.Register(&StatusBackend{}, &StatusBackendList{}, &ClusterStatusBackend{}, &ClusterStatusBackendList{})
}
