// Small generic strategies: no defaulting or validation of built-in types (that code lives in
// k8s.io/kubernetes), generation bumped on spec changes only, status written only through the
// status subresource.
package main

import (
	"context"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	namespaced bool
	hasStatus  bool
	apiVersion string
}

func newStrategy(r resourceSpec) strategy {
	return strategy{coreScheme, names.SimpleNameGenerator, r.namespaced, r.hasStatus, r.gv.String()}
}

func reflectNew(t reflect.Type) interface{} { return reflect.New(t).Interface() }

func field0(obj runtime.Object, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() == reflect.Ptr {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.FieldByName(name)
}

func (s strategy) NamespaceScoped() bool          { return s.namespaced }
func (s strategy) AllowCreateOnUpdate() bool      { return false }
func (s strategy) AllowUnconditionalUpdate() bool { return true }
func (s strategy) Canonicalize(runtime.Object)    {}
func (s strategy) Validate(context.Context, runtime.Object) field.ErrorList {
	return nil
}
func (s strategy) ValidateUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}
func (s strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (s strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if s.hasStatus {
		if st := field0(obj, "Status"); st.IsValid() && st.CanSet() {
			st.Set(reflect.Zero(st.Type()))
		}
	}
	if ns, ok := obj.(*corev1.Namespace); ok {
		ns.Status.Phase = corev1.NamespaceActive
	}
	if field0(obj, "Spec").IsValid() {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetGeneration(1)
		}
	}
}

func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if s.hasStatus {
		if st, prev := field0(obj, "Status"), field0(old, "Status"); st.IsValid() && st.CanSet() {
			st.Set(prev)
		}
	}
	bumpGeneration(obj, old)
}

func bumpGeneration(obj, old runtime.Object) {
	spec, prevSpec := field0(obj, "Spec"), field0(old, "Spec")
	m, err := meta.Accessor(obj)
	if err != nil || !spec.IsValid() {
		return
	}
	o, _ := meta.Accessor(old)
	generation := o.GetGeneration()
	if !reflect.DeepEqual(spec.Interface(), prevSpec.Interface()) {
		generation++
	}
	m.SetGeneration(generation)
}

func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.hasStatus {
		return nil
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.apiVersion): fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// statusStrategy updates only the status: the spec and the generation stay as they were.
type statusStrategy struct{ strategy }

func (s statusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if spec, prev := field0(obj, "Spec"), field0(old, "Spec"); spec.IsValid() && spec.CanSet() {
		spec.Set(prev)
	}
	if m, err := meta.Accessor(obj); err == nil {
		if o, err := meta.Accessor(old); err == nil {
			m.SetGeneration(o.GetGeneration())
			m.SetLabels(o.GetLabels())
			m.SetAnnotations(o.GetAnnotations())
		}
	}
}

func (s statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.apiVersion): fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
		),
	}
}
