package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialsSecretReference points at the key of a Secret holding the backend's admin credential: a FullAccess admin token for the native driver, a Super-admin API token for zabbix.
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
	// For the zabbix driver it is the frontend's base URL, for example https://zabbix.example.com: the API is <url>/api_jsonrpc.php.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// Provider chooses the backend's driver; unset means the native protocol (docs/backend-protocol.md), so manifests written before drivers existed keep their meaning.
	// +optional
	Provider *BackendProvider `json:"provider,omitempty"`

	// CredentialsSecretRef names the Secret key holding the backend's admin credential, used to issue and deactivate tokens.
	// For the native driver it is a FullAccess token of the backend; for zabbix, an API token of a Super admin (on Zabbix 6.0 only a Super admin may manage other users' tokens).
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

// BackendProvider chooses the driver that speaks to the backend; exactly one field is set.
// It follows External Secrets' spec.provider.<name>: a driver's own settings live under its name.
// +kubebuilder:validation:XValidation:rule="[has(self.native), has(self.zabbix)].filter(x, x).size() == 1",message="spec.provider must name exactly one driver: native or zabbix"
type BackendProvider struct {
	// Native is the operator's own HTTP protocol (docs/backend-protocol.md), the default: the reference backend, or an adapter of your own that speaks it.
	// +optional
	Native *NativeProvider `json:"native,omitempty"`

	// Zabbix mints the API tokens of a Zabbix server (5.4 and later) for two Zabbix users that you create: ReadOnly tokens for readOnlyUser, FullAccess tokens for fullAccessUser.
	// spec.url is then the frontend's base URL and spec.credentialsSecretRef a Super-admin API token.
	// +optional
	Zabbix *ZabbixProvider `json:"zabbix,omitempty"`
}

// NativeProvider has no settings: everything the native protocol needs is in spec.url, spec.credentialsSecretRef and spec.caBundle.
type NativeProvider struct{}

// ZabbixProvider names the Zabbix users whose tokens the operator mints. Zabbix expresses a token's permission through the role of the user that owns it, so each permission needs its own user.
// +kubebuilder:validation:XValidation:rule="self.readOnlyUser != self.fullAccessUser",fieldPath=".fullAccessUser",message="spec.provider.zabbix.fullAccessUser must be another user than readOnlyUser: a token's permission is its user's role"
type ZabbixProvider struct {
	// ReadOnlyUser is the Zabbix user (username) ReadOnly tokens are minted for; its role must allow only *.get API methods.
	// Zabbix allows any UTF-8 username of at most 100 characters; control characters are refused here.
	// The backend check verifies the role and says what is wrong.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1f\x7f]+$`
	// +required
	ReadOnlyUser string `json:"readOnlyUser"`

	// FullAccessUser is the Zabbix user (username) FullAccess tokens are minted for; its role must deny token.*, user.*, role.* and usergroup.*, so that a workload's token can never mint tokens.
	// Its user group needs write rights on the host groups the workloads write to.
	// The backend check verifies the role and says what is wrong.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1f\x7f]+$`
	// +required
	FullAccessUser string `json:"fullAccessUser"`
}

// Driver names, as status.driver reports them. They equal the names internal/backend/drivers registers its drivers under (api/ imports no internal package, so they are written out here).
const (
	// DriverNative is the operator's own HTTP protocol, used when spec.provider is unset or names native.
	DriverNative = "native"
	// DriverZabbix is the Zabbix API token driver (spec.provider.zabbix).
	DriverZabbix = "zabbix"
)

// Capability names, as status.capabilities[].name reports them. They equal internal/backend's Capability values: what a driver offers beyond issuing, reading, listing and deactivating tokens.
const (
	// CapabilityUsage: the backend reports each token's last write and last refused write, which the least-privilege review needs.
	CapabilityUsage = "usage"
	// CapabilityClaim: the backend can verify and claim an existing token, which adoption (spec.adopt) needs.
	CapabilityClaim = "claim"
	// CapabilityUpdatedSince: the backend lists only the tokens changed since a time, so an idle inventory costs one request.
	CapabilityUpdatedSince = "updated_since"
)

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

	// LastCheckedAt is when the credential was last checked (GET /ping for the native driver).
	// +optional
	LastCheckedAt *metav1.Time `json:"lastCheckedAt,omitempty"`

	// Driver is the driver the operator speaks to this backend with: native or zabbix.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Driver string `json:"driver,omitempty"`

	// Capabilities lists, from the last check, which optional abilities the backend offers (usage, claim, updated_since) and what a missing one degrades.
	// Unset until the first check.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Capabilities []BackendCapability `json:"capabilities,omitempty"`

	// Conditions: Ready is True after a successful check of the credential (GET /ping for the native driver).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Tokens counts the backend's active tokens by who manages them, from the operator's last inventory of the backend (refreshed once per sync interval), so that tokens which existed before the operator show up for review.
	// Unset until the first inventory.
	// +optional
	Tokens *BackendTokenCounts `json:"tokens,omitempty"`
}

// BackendCapability says whether the backend offers one optional ability, and what is degraded without it.
type BackendCapability struct {
	// Name is the capability: usage (write and refused-write times, for the least-privilege review), claim (adoption of existing tokens) or updated_since (incremental inventory).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// Supported is true when the backend offers the capability.
	// +required
	Supported bool `json:"supported"`

	// Effect says what the missing capability degrades, for example "the least-privilege review reports Unknown"; empty when supported.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Effect string `json:"effect,omitempty"`
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
// +kubebuilder:printcolumn:name="Driver",type=string,JSONPath=`.status.driver`
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
// +kubebuilder:printcolumn:name="Driver",type=string,JSONPath=`.status.driver`
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
