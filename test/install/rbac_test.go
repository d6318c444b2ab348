package install

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/installtest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

const tokensGroup = "tokens.statusops.dev"

// permission is one allowed (API group, resource, verbs) and why the operator needs it.
// Resource is "resource" or "resource/subresource". Optional ones may be left out of the
// role without breaking the operator (kubebuilder's conventional "get" on status).
type permission struct {
	group, resource string
	verbs           []string
	why             string
	optional        bool
}

// managerClusterPermissions is everything the manager's ClusterRole (config/rbac/role.yaml,
// generated from the +kubebuilder:rbac markers in controllers/) may grant. A rule beyond this
// list fails TestManagerClusterRoleIsLeastPrivilege: extend the list only with a reason.
var managerClusterPermissions = []permission{
	{tokensGroup, "apitokens", []string{"get", "list", "watch"},
		"the APIToken controller watches APITokens in every (watched) namespace through its cache", false},
	{tokensGroup, "apitokens", []string{"update", "patch"},
		"adds and removes the tokens.statusops.dev/finalizer; the operator never creates or deletes APITokens", false},
	{tokensGroup, "apitokens/status", []string{"update", "patch"},
		"writes phase, tokenID, tokenHint, timestamps and the Ready/Reconciling/Stalled conditions", false},
	{tokensGroup, "apitokens/status", []string{"get"}, "conventional with update; harmless", true},
	{tokensGroup, "apitokens/finalizers", []string{"update"},
		"setting blockOwnerDeletion on the Secret's controller owner reference needs it where the OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift and many hardened clusters)", false},
	{tokensGroup, "statusbackends", []string{"get", "list", "watch"},
		"resolves spec.backendRef and watches backends so waiting tokens proceed when one becomes Ready", false},
	{tokensGroup, "clusterstatusbackends", []string{"get", "list", "watch"},
		"as statusbackends, for the cluster-scoped kind (the default backend)", false},
	{tokensGroup, "statusbackends", []string{"patch"},
		"adds and removes the tokens.statusops.dev/backend-in-use finalizer, which keeps a backend until no APIToken refers to it", false},
	{tokensGroup, "clusterstatusbackends", []string{"patch"}, "as statusbackends", false},
	{tokensGroup, "statusbackends/finalizers", []string{"update"}, "as apitokens/finalizers, for the backend finalizer", false},
	{tokensGroup, "clusterstatusbackends/finalizers", []string{"update"}, "as apitokens/finalizers, for the backend finalizer", false},
	{tokensGroup, "statusbackends/status", []string{"update", "patch"}, "writes Ready after GET /ping", false},
	{tokensGroup, "clusterstatusbackends/status", []string{"update", "patch"}, "writes Ready after GET /ping", false},
	{tokensGroup, "statusbackends/status", []string{"get"}, "conventional with update; harmless", true},
	{tokensGroup, "clusterstatusbackends/status", []string{"get"}, "conventional with update; harmless", true},
	{"", "secrets", []string{"get", "list", "watch"},
		"caches the token Secrets it writes (the cache is filtered by the managed-by label, but RBAC cannot select by label) and reads backend credential Secrets", false},
	{"", "secrets", []string{"create", "update", "patch"},
		"writes the token into the APIToken's Secret; RBAC cannot restrict create by name, and Secret names are chosen by users", false},
	{"", "secrets", []string{"delete"},
		"removes the Secret when its APIToken is deleted (deletionPolicy Revoke) instead of waiting for garbage collection", false},
	{"", "namespaces", []string{"get", "list", "watch"},
		"evaluates ClusterStatusBackend allowedNamespaces label selectors and reacts when namespace labels change", false},
	{"events.k8s.io", "events", []string{"create", "patch"},
		"records the Issued, Replaced, Expired, Deactivated, Revoked and Failed Events users see in kubectl describe (mgr.GetEventRecorder writes events.k8s.io/v1 Events)", false},
}

// metricsAuthPermissions is what config/rbac/metrics_auth_role.yaml grants the manager,
// cluster-wide: the metrics endpoint (--metrics-secure, the default) checks each scraper.
var metricsAuthPermissions = []permission{
	{"authentication.k8s.io", "tokenreviews", []string{"create"},
		"the metrics endpoint authenticates each scraper's bearer token with a TokenReview (internal/metricsauth's Filter)", false},
	{"authorization.k8s.io", "subjectaccessreviews", []string{"create"},
		"the metrics endpoint asks whether the scraper may get the non-resource URL /metrics", false},
}

// leaderElectionPermissions is what the leader-election Role grants, in the operator's
// namespace only.
var leaderElectionPermissions = []permission{
	{"coordination.k8s.io", "leases", []string{"get", "list", "watch", "create", "update", "patch", "delete"},
		"the replicas elect a leader through a Lease", false},
	{"", "events", []string{"create", "patch"},
		"the leader elector records LeaderElection Events through controller-runtime's core/v1 recorder", false},
}

// grant is one verb on one resource of one group.
type grant struct{ group, resource, verb string }

func (g grant) String() string {
	group := g.group
	if group == "" {
		group = "core"
	}
	return fmt.Sprintf("%s %s/%s", g.verb, group, g.resource)
}

// grants flattens permissions into grants; with requiredOnly it leaves out optional ones.
func grants(perms []permission, requiredOnly bool) map[grant]bool {
	out := map[grant]bool{}
	for _, p := range perms {
		if requiredOnly && p.optional {
			continue
		}
		for _, v := range p.verbs {
			out[grant{p.group, p.resource, v}] = true
		}
	}
	return out
}

// flattenRules turns RBAC rules into grants and reports what no allow-list can cover:
// wildcards, non-resource URLs and resourceNames (which the operator does not use).
func flattenRules(rules []rbacv1.PolicyRule) (map[grant]bool, []string) {
	out := map[grant]bool{}
	var problems []string
	for i, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			problems = append(problems, fmt.Sprintf("rule %d grants non-resource URLs %v", i, r.NonResourceURLs))
		}
		if len(r.ResourceNames) > 0 {
			problems = append(problems, fmt.Sprintf("rule %d is limited to resourceNames %v; the allow-list does not model that", i, r.ResourceNames))
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(list, "*") || slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, "*") }) {
				problems = append(problems, fmt.Sprintf("rule %d uses a wildcard: %+v", i, r))
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[grant{g, res, v}] = true
				}
			}
		}
	}
	return out, problems
}

// compareGrants returns the grants beyond allowed and the required grants missing.
func compareGrants(got, allowed, required map[grant]bool) (extra, missing []string) {
	for g := range got {
		if !allowed[g] {
			extra = append(extra, g.String())
		}
	}
	for g := range required {
		if !got[g] {
			missing = append(missing, g.String())
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return extra, missing
}

// TestManagerClusterRoleIsLeastPrivilege fails when the generated ClusterRole grants anything
// beyond managerClusterPermissions, uses a wildcard, or lacks something the operator needs.
func TestManagerClusterRoleIsLeastPrivilege(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(repoPath("config", "rbac", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred(), "run `make manifests`")
	var role rbacv1.ClusterRole
	g.Expect(yaml.Unmarshal(data, &role)).To(Succeed())
	g.Expect(role.Kind).To(Equal("ClusterRole"))
	g.Expect(role.AggregationRule).To(BeNil(), "an aggregated role can grow beyond what is reviewed here")

	got, problems := flattenRules(role.Rules)
	g.Expect(problems).To(BeEmpty())
	extra, missing := compareGrants(got, grants(managerClusterPermissions, false), grants(managerClusterPermissions, true))
	g.Expect(extra).To(BeEmpty(), "config/rbac/role.yaml grants more than the operator uses; narrow the +kubebuilder:rbac markers in controllers/ or justify the grant in managerClusterPermissions")
	g.Expect(missing).To(BeEmpty(), "config/rbac/role.yaml lacks permissions the operator needs; add +kubebuilder:rbac markers in controllers/ and run `make manifests`")
}

// boundRules collects, from a set of manifests, the rules bound to the user through
// ClusterRoleBindings (cluster-wide) and through RoleBindings (per namespace), and fails on
// bindings to roles the manifests do not define (e.g. cluster-admin).
func boundRules(t *testing.T, objs []*unstructured.Unstructured, saNamespace, saName string) (cluster []rbacv1.PolicyRule, namespaced map[string][]rbacv1.PolicyRule) {
	t.Helper()
	g := NewWithT(t)
	clusterRoles := map[string]rbacv1.ClusterRole{}
	roles := map[string]rbacv1.Role{}
	for _, o := range byKind(objs, "ClusterRole") {
		var r rbacv1.ClusterRole
		g.Expect(convert(o, &r)).To(Succeed())
		clusterRoles[r.Name] = r
	}
	for _, o := range byKind(objs, "Role") {
		var r rbacv1.Role
		g.Expect(convert(o, &r)).To(Succeed())
		roles[r.Namespace+"/"+r.Name] = r
	}
	bindsSA := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == saName && s.Namespace == saNamespace
		})
	}
	namespaced = map[string][]rbacv1.PolicyRule{}
	for _, o := range byKind(objs, "ClusterRoleBinding") {
		var b rbacv1.ClusterRoleBinding
		g.Expect(convert(o, &b)).To(Succeed())
		if !bindsSA(b.Subjects) {
			continue
		}
		r, ok := clusterRoles[b.RoleRef.Name]
		g.Expect(ok).To(BeTrue(), "ClusterRoleBinding %s binds ClusterRole %s, which the installation does not define", b.Name, b.RoleRef.Name)
		g.Expect(r.AggregationRule).To(BeNil())
		cluster = append(cluster, r.Rules...)
	}
	for _, o := range byKind(objs, "RoleBinding") {
		var b rbacv1.RoleBinding
		g.Expect(convert(o, &b)).To(Succeed())
		if !bindsSA(b.Subjects) {
			continue
		}
		g.Expect(b.RoleRef.Kind).To(Equal("Role"), "RoleBinding %s/%s", b.Namespace, b.Name)
		r, ok := roles[b.Namespace+"/"+b.RoleRef.Name]
		g.Expect(ok).To(BeTrue(), "RoleBinding %s/%s binds Role %s, which the installation does not define", b.Namespace, b.Name, b.RoleRef.Name)
		namespaced[b.Namespace] = append(namespaced[b.Namespace], r.Rules...)
	}
	return cluster, namespaced
}

// checkShippedPermissions checks that the ServiceAccount of an installation gets exactly the
// allow-listed permissions: the manager ClusterRole cluster-wide, leader election in its own
// namespace, nothing else.
func checkShippedPermissions(t *testing.T, objs []*unstructured.Unstructured, saNamespace, saName string) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(byKind(objs, "ServiceAccount")).To(ContainElement(WithTransform(func(o *unstructured.Unstructured) string {
		return o.GetNamespace() + "/" + o.GetName()
	}, Equal(saNamespace+"/"+saName))))
	cluster, namespaced := boundRules(t, objs, saNamespace, saName)

	got, problems := flattenRules(cluster)
	g.Expect(problems).To(BeEmpty())
	clusterWide := slices.Concat(managerClusterPermissions, metricsAuthPermissions)
	extra, missing := compareGrants(got, grants(clusterWide, false), grants(clusterWide, true))
	g.Expect(extra).To(BeEmpty(), "cluster-wide grants beyond the allow-list")
	g.Expect(missing).To(BeEmpty(), "cluster-wide grants the operator needs")

	g.Expect(namespaced).To(HaveLen(1))
	g.Expect(namespaced).To(HaveKey(saNamespace), "leader election must be granted in the operator's own namespace only")
	got, problems = flattenRules(namespaced[saNamespace])
	g.Expect(problems).To(BeEmpty())
	extra, missing = compareGrants(got, grants(leaderElectionPermissions, false), grants(leaderElectionPermissions, true))
	g.Expect(extra).To(BeEmpty(), "leader-election grants beyond the allow-list")
	g.Expect(missing).To(BeEmpty(), "leader-election grants the operator needs")
}

// TestInstallYAMLGrantsOnlyTheAllowList checks the bindings of dist/install.yaml.
func TestInstallYAMLGrantsOnlyTheAllowList(t *testing.T) {
	checkShippedPermissions(t, installObjects(t), installtest.Namespace, installtest.ServiceAccountName)
}

// accessCheck is one SelfSubjectAccessReview question.
type accessCheck struct {
	group, resource, subresource, verb, namespace string
}

func (a accessCheck) String() string {
	ns := a.namespace
	if ns == "" {
		ns = "(cluster)"
	}
	res := a.resource
	if a.subresource != "" {
		res += "/" + a.subresource
	}
	return fmt.Sprintf("%s %s.%s in %s", a.verb, res, a.group, ns)
}

// allowed asks the API server, as the impersonated user, whether it may do a.
func allowed(ctx context.Context, cs kubernetes.Interface, a accessCheck) (bool, error) {
	review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: a.group, Resource: a.resource, Subresource: a.subresource, Verb: a.verb, Namespace: a.namespace,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return review.Status.Allowed, nil
}

// checksFor expands permissions into access checks in namespace ns ("" for cluster-wide).
func checksFor(perms []permission, ns string, clusterScoped map[string]bool) []accessCheck {
	var out []accessCheck
	for _, p := range perms {
		if p.optional {
			continue
		}
		res, sub, _ := strings.Cut(p.resource, "/")
		n := ns
		if clusterScoped[res] {
			n = ""
		}
		for _, v := range p.verbs {
			out = append(out, accessCheck{p.group, res, sub, v, n})
		}
	}
	return out
}

// TestImpersonatedServiceAccount applies the RBAC of dist/install.yaml for real and acts as
// the manager's ServiceAccount: it can do everything the operator needs, in any namespace,
// and cannot do what it does not need.
func TestImpersonatedServiceAccount(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := env.Client
	g.Expect(installtest.ApplyRBAC(ctx, admin, installtest.InstallManifestPath())).To(Succeed())

	team := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac-team-a"}}
	g.Expect(admin.Create(ctx, team)).To(Succeed())

	impCfg := installtest.ImpersonatedConfig(env.Config)
	cs, err := kubernetes.NewForConfig(impCfg)
	g.Expect(err).NotTo(HaveOccurred())
	sa, err := client.New(impCfg, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())

	clusterScoped := map[string]bool{"clusterstatusbackends": true, "namespaces": true}
	var must []accessCheck
	for _, ns := range []string{team.Name, "default"} {
		must = append(must, checksFor(managerClusterPermissions, ns, clusterScoped)...)
	}
	must = append(must, checksFor(managerClusterPermissions, "", nil)...) // cluster-wide list/watch
	must = append(must, checksFor(metricsAuthPermissions, "", nil)...)
	must = append(must, checksFor(leaderElectionPermissions, installtest.Namespace, nil)...)

	mustNot := []accessCheck{
		{"", "pods", "", "list", ""},
		{"", "pods", "", "create", team.Name},
		{"", "namespaces", "", "delete", ""},
		{"", "namespaces", "", "create", ""},
		{"", "namespaces", "", "update", ""},
		{"", "configmaps", "", "get", team.Name},
		{"", "serviceaccounts", "token", "create", team.Name},
		{"", "nodes", "", "list", ""},
		{"apps", "deployments", "", "create", team.Name},
		{tokensGroup, "apitokens", "", "create", team.Name},
		{tokensGroup, "apitokens", "", "delete", team.Name},
		{tokensGroup, "statusbackends", "", "update", team.Name},
		{tokensGroup, "clusterstatusbackends", "", "delete", ""},
		{"coordination.k8s.io", "leases", "", "create", team.Name},
		{"coordination.k8s.io", "leases", "", "list", ""},
		{"rbac.authorization.k8s.io", "clusterroles", "", "create", ""},
		{"rbac.authorization.k8s.io", "clusterroles", "", "escalate", ""},
		{"rbac.authorization.k8s.io", "clusterrolebindings", "", "create", ""},
		{"rbac.authorization.k8s.io", "roles", "", "bind", team.Name},
		{"", "users", "", "impersonate", ""},
		{"", "serviceaccounts", "", "impersonate", team.Name},
		{"apiextensions.k8s.io", "customresourcedefinitions", "", "update", ""},
		{"admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "create", ""},
		{"authentication.k8s.io", "tokenreviews", "", "delete", ""},
		{"", "serviceaccounts", "token", "create", installtest.Namespace},
	}

	// The RBAC authorizer sees new bindings after a short delay.
	g.Eventually(func() (bool, error) { return allowed(ctx, cs, must[0]) }).
		WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(BeTrue())
	for _, a := range must {
		ok, err := allowed(ctx, cs, a)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue(), "the ServiceAccount must be allowed to %s", a)
	}
	for _, a := range mustNot {
		ok, err := allowed(ctx, cs, a)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeFalse(), "the ServiceAccount must not be allowed to %s", a)
	}

	// Real calls, as the operator makes them.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "grafana-status-token", Namespace: team.Name,
			Labels: map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}},
		StringData: map[string]string{"tokenID": "tok_1"},
	}
	g.Expect(sa.Create(ctx, secret)).To(Succeed())
	g.Expect(sa.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.StringData = map[string]string{"tokenID": "tok_2"}
	g.Expect(sa.Update(ctx, secret)).To(Succeed())
	var secrets corev1.SecretList
	g.Expect(sa.List(ctx, &secrets, client.MatchingLabels{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue})).To(Succeed())
	g.Expect(secrets.Items).To(HaveLen(1))
	g.Expect(sa.Delete(ctx, secret)).To(Succeed())

	var nsList corev1.NamespaceList
	g.Expect(sa.List(ctx, &nsList)).To(Succeed())

	token := &tokensv1alpha1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "grafana", Namespace: team.Name},
		Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
	}
	err = sa.Create(ctx, token.DeepCopy())
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "creating an APIToken must be forbidden, got %v", err)
	g.Expect(admin.Create(ctx, token)).To(Succeed())
	var tokens tokensv1alpha1.APITokenList
	g.Expect(sa.List(ctx, &tokens)).To(Succeed())
	g.Expect(tokens.Items).To(HaveLen(1))
	before := token.DeepCopy()
	token.Finalizers = append(token.Finalizers, tokensv1alpha1.Finalizer)
	g.Expect(sa.Patch(ctx, token, client.MergeFrom(before))).To(Succeed())
	before = token.DeepCopy()
	token.Status.Phase = tokensv1alpha1.PhasePending
	g.Expect(sa.Status().Patch(ctx, token, client.MergeFrom(before))).To(Succeed())
	err = sa.Delete(ctx, token)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting an APIToken must be forbidden, got %v", err)

	var backends tokensv1alpha1.ClusterStatusBackendList
	g.Expect(sa.List(ctx, &backends)).To(Succeed())

	event := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "grafana.issued", Namespace: team.Name},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "apitoken-operator", ReportingInstance: "rbac-test", Action: "Issue",
		Regarding: corev1.ObjectReference{Kind: "APIToken", APIVersion: tokensv1alpha1.GroupVersion.String(), Name: token.Name, Namespace: team.Name},
		Reason:    tokensv1alpha1.ReasonIssued, Note: "Issued a ReadOnly token.", Type: corev1.EventTypeNormal,
	}
	g.Expect(sa.Create(ctx, event)).To(Succeed())
	coreEvent := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "grafana.core", Namespace: team.Name},
		InvolvedObject: event.Regarding, Reason: "Test", Message: "core/v1 Events are needed only in the operator's namespace.",
	}
	g.Expect(apierrors.IsForbidden(sa.Create(ctx, coreEvent))).To(BeTrue(), "core/v1 Events outside the operator's namespace must be forbidden")

	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "rbac-test-lease", Namespace: installtest.Namespace}}
	g.Expect(sa.Create(ctx, lease)).To(Succeed())
	g.Expect(sa.Delete(ctx, lease)).To(Succeed())
	otherLease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "rbac-test-lease", Namespace: team.Name}}
	g.Expect(apierrors.IsForbidden(sa.Create(ctx, otherLease))).To(BeTrue())

	var pods corev1.PodList
	g.Expect(apierrors.IsForbidden(sa.List(ctx, &pods))).To(BeTrue(), "listing pods must be forbidden")
	g.Expect(apierrors.IsForbidden(sa.Delete(ctx, team.DeepCopy()))).To(BeTrue(), "deleting a namespace must be forbidden")
	var cms corev1.ConfigMapList
	g.Expect(apierrors.IsForbidden(sa.List(ctx, &cms, client.InNamespace(team.Name)))).To(BeTrue(), "listing configmaps must be forbidden")
}

// TestImpersonatedKubeconfig: a kubeconfig written from ImpersonatedConfig (what the
// end-to-end test hands the built manager) acts as the ServiceAccount, with the shipped RBAC only.
func TestImpersonatedKubeconfig(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(installtest.ApplyRBAC(ctx, env.Client, installtest.InstallManifestPath())).To(Succeed())

	path := t.TempDir() + "/kubeconfig"
	g.Expect(installtest.WriteKubeconfig(installtest.ImpersonatedConfig(env.Config), path)).To(Succeed())
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	g.Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())

	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(review.Status.UserInfo.Username).To(Equal(installtest.ServiceAccountUser))

	g.Eventually(func() (bool, error) {
		return allowed(ctx, cs, accessCheck{tokensGroup, "apitokens", "", "watch", ""})
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	_, err = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "listing pods must be forbidden, got %v", err)
}
