// pods/eviction as kube-apiserver serves it, with the disruption controller's arithmetic done at
// request time instead of from a PodDisruptionBudget's status: a pod covered by a budget is
// deleted only when the budget still allows one more disruption, else 429 with the real message.
// Not reproduced: unhealthyPodEvictionPolicy, the budget's resourceVersion check that serialises
// concurrent evictions, and budgets over pods of controllers' scale subresources.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

type evictionREST struct {
	pods *genericregistry.Store
	pdbs *genericregistry.Store
}

func (r *evictionREST) New() runtime.Object { return &policyv1.Eviction{} }
func (r *evictionREST) Destroy()            {}
func (r *evictionREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return policyv1.SchemeGroupVersion.WithKind("Eviction")
}

func ready(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (r *evictionREST) Create(ctx context.Context, name string, _ runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	obj, err := r.pods.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pod := obj.(*corev1.Pod)
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if !terminal && ready(pod) {
		if err := r.checkBudgets(ctx, pod); err != nil {
			return nil, err
		}
	}
	if _, _, err := r.pods.Delete(ctx, name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	return &metav1.Status{Status: metav1.StatusSuccess, Code: 201}, nil
}

func (r *evictionREST) checkBudgets(ctx context.Context, pod *corev1.Pod) error {
	list, err := r.pdbs.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return err
	}
	var budgets []policyv1.PodDisruptionBudget
	for _, pdb := range list.(*policyv1.PodDisruptionBudgetList).Items {
		selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || selector.Empty() || !selector.Matches(labels.Set(pod.Labels)) {
			continue
		}
		budgets = append(budgets, pdb)
	}
	if len(budgets) > 1 {
		return apierrors.NewInternalError(errTooManyBudgets)
	}
	if len(budgets) == 0 {
		return nil
	}
	pdb := budgets[0]
	selector, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	pods, err := r.pods.List(ctx, &metainternalversion.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	expected, healthy := 0, 0
	for i := range pods.(*corev1.PodList).Items {
		p := &pods.(*corev1.PodList).Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		expected++
		if ready(p) {
			healthy++
		}
	}
	allowed, desired := 0, expected
	switch {
	case pdb.Spec.MinAvailable != nil:
		desired = scaled(pdb.Spec.MinAvailable, expected)
		allowed = healthy - desired
	case pdb.Spec.MaxUnavailable != nil:
		desired = expected - scaled(pdb.Spec.MaxUnavailable, expected)
		allowed = healthy - desired
	}
	if allowed <= 0 {
		err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type:    policyv1.DisruptionBudgetCause,
			Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, desired, healthy),
		})
		return err
	}
	return nil
}

// scaled resolves an int-or-percent against the expected pod count (percentages round up, as
// the disruption controller does).
func scaled(value *intstr.IntOrString, expected int) int {
	if value.Type == intstr.Int {
		return value.IntValue()
	}
	percent, err := intstr.GetScaledValueFromIntOrPercent(value, 100, true)
	if err != nil {
		return 0
	}
	return int(math.Ceil(float64(percent*expected) / 100))
}

var errTooManyBudgets = errors.New("this pod has more than one PodDisruptionBudget, which the eviction subresource does not support")
