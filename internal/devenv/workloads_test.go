package devenv_test

import (
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// TestRolloutComplete covers the rollout-complete condition without a cluster: the current
// generation observed, and every desired replica updated and available with no old one left.
func TestRolloutComplete(t *testing.T) {
	deployment := func(generation, observed int64, replicas, current, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: generation},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{
				ObservedGeneration: observed, Replicas: current, UpdatedReplicas: updated, AvailableReplicas: available,
			},
		}
	}
	statefulSet := func(replicas, updated, available int32, currentRevision, updateRevision string) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.StatefulSetStatus{
				ObservedGeneration: 3, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available,
				CurrentRevision: currentRevision, UpdateRevision: updateRevision,
			},
		}
	}
	daemonSet := func(observed int64, desired, current, updated, available int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DaemonSetStatus{
				ObservedGeneration: observed, DesiredNumberScheduled: desired, CurrentNumberScheduled: current,
				UpdatedNumberScheduled: updated, NumberAvailable: available,
			},
		}
	}
	tests := map[string]struct {
		obj      client.Object
		complete bool
		why      string
	}{
		"deployment rolled out":                   {deployment(2, 2, 2, 2, 2, 2), true, ""},
		"deployment status of the old generation": {deployment(3, 2, 2, 2, 2, 2), false, "observedGeneration 2, generation 3"},
		"deployment new pods not available yet":   {deployment(2, 2, 2, 2, 2, 1), false, "2 desired, 2 current, 2 updated, 1 available"},
		"deployment old pods still there":         {deployment(2, 2, 2, 3, 2, 2), false, "2 desired, 3 current, 2 updated, 2 available"},
		"deployment only partly updated":          {deployment(2, 2, 2, 2, 1, 2), false, "2 desired, 2 current, 1 updated, 2 available"},
		"deployment scaled to zero":               {deployment(2, 2, 0, 0, 0, 0), true, ""},
		"statefulset rolled out":                  {statefulSet(2, 2, 2, "web-2", "web-2"), true, ""},
		"statefulset revision not current yet":    {statefulSet(2, 2, 2, "web-1", "web-2"), false, "currentRevision web-1 is not updateRevision web-2"},
		"daemonset rolled out":                    {daemonSet(2, 1, 1, 1, 1), true, ""},
		"daemonset status of the old generation":  {daemonSet(1, 1, 1, 1, 1), false, "observedGeneration 1, generation 2"},
		"daemonset pod not updated yet":           {daemonSet(2, 1, 1, 0, 1), false, "1 desired, 1 current, 0 updated, 1 available"},
		"not a workload":                          {&corev1.Pod{}, false, "is not a Deployment, StatefulSet or DaemonSet"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			complete, why := devenv.RolloutComplete(tc.obj)
			g.Expect(complete).To(Equal(tc.complete))
			if tc.complete {
				g.Expect(why).To(BeEmpty())
			} else {
				g.Expect(why).To(ContainSubstring(tc.why))
			}
		})
	}
}
