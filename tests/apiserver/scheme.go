// The built-in types this test API server serves, straight from k8s.io/api. Each external
// version is registered again as the internal version of its group, so the generic registry
// stores them without conversions (the conversions live in k8s.io/kubernetes, which Debian
// does not ship).
package main

import (
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

var (
	coreScheme          = runtime.NewScheme()
	coreCodecs          = serializer.NewCodecFactory(coreScheme)
	servedGroupVersions = []schema.GroupVersion{
		corev1.SchemeGroupVersion,
		appsv1.SchemeGroupVersion,
		coordinationv1.SchemeGroupVersion,
		eventsv1.SchemeGroupVersion,
		admissionregistrationv1.SchemeGroupVersion,
		policyv1.SchemeGroupVersion,
		rbacv1.SchemeGroupVersion,
	}
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, coordinationv1.AddToScheme,
		eventsv1.AddToScheme, admissionregistrationv1.AddToScheme, policyv1.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(coreScheme); err != nil {
			panic(err)
		}
	}
	for _, gv := range servedGroupVersions {
		internal := schema.GroupVersion{Group: gv.Group, Version: runtime.APIVersionInternal}
		for kind, typ := range coreScheme.KnownTypes(gv) {
			// Only the group's own types; meta/v1's (WatchEvent, options) have internal forms.
			if !strings.HasPrefix(typ.PkgPath(), "k8s.io/api/") {
				continue
			}
			obj, ok := reflectNew(typ).(runtime.Object)
			if !ok {
				continue
			}
			coreScheme.AddKnownTypeWithName(internal.WithKind(kind), obj)
		}
	}
	metav1.AddToGroupVersion(coreScheme, schema.GroupVersion{Version: "v1"})
	must(coreScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Pod"),
		allowLabels("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")))
	eventLabels := allowLabels("metadata.name", "metadata.namespace", "involvedObject.kind",
		"involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
		"involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
		"reason", "reportingComponent", "source", "type")
	must(coreScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Event"), eventLabels))
	must(coreScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Node"),
		allowLabels("metadata.name", "spec.unschedulable")))
}

func allowLabels(labels ...string) runtime.FieldLabelConversionFunc {
	return func(label, value string) (string, string, error) {
		for _, l := range labels {
			if l == label {
				return label, value, nil
			}
		}
		return "", "", fmt.Errorf("field label not supported: %s", label)
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
