// One generic registry store per served resource, over etcd, with a storage codec per group.
package main

import (
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

type resourceSpec struct {
	gv         schema.GroupVersion
	plural     string
	singular   string
	namespaced bool
	hasStatus  bool
	newObj     func() runtime.Object
	newList    func() runtime.Object
	// Field labels beyond metadata.name/namespace, for field selectors.
	extraFields func(runtime.Object) fields.Set
}

var resources = []resourceSpec{
	{corev1.SchemeGroupVersion, "namespaces", "namespace", false, true, func() runtime.Object { return &corev1.Namespace{} }, func() runtime.Object { return &corev1.NamespaceList{} }, nil},
	{corev1.SchemeGroupVersion, "nodes", "node", false, true, func() runtime.Object { return &corev1.Node{} }, func() runtime.Object { return &corev1.NodeList{} }, nodeFields},
	{corev1.SchemeGroupVersion, "pods", "pod", true, true, func() runtime.Object { return &corev1.Pod{} }, func() runtime.Object { return &corev1.PodList{} }, podFields},
	{corev1.SchemeGroupVersion, "configmaps", "configmap", true, false, func() runtime.Object { return &corev1.ConfigMap{} }, func() runtime.Object { return &corev1.ConfigMapList{} }, nil},
	{corev1.SchemeGroupVersion, "secrets", "secret", true, false, func() runtime.Object { return &corev1.Secret{} }, func() runtime.Object { return &corev1.SecretList{} }, nil},
	{corev1.SchemeGroupVersion, "services", "service", true, true, func() runtime.Object { return &corev1.Service{} }, func() runtime.Object { return &corev1.ServiceList{} }, nil},
	{corev1.SchemeGroupVersion, "serviceaccounts", "serviceaccount", true, false, func() runtime.Object { return &corev1.ServiceAccount{} }, func() runtime.Object { return &corev1.ServiceAccountList{} }, nil},
	{corev1.SchemeGroupVersion, "events", "event", true, false, func() runtime.Object { return &corev1.Event{} }, func() runtime.Object { return &corev1.EventList{} }, eventFields},
	{appsv1.SchemeGroupVersion, "daemonsets", "daemonset", true, true, func() runtime.Object { return &appsv1.DaemonSet{} }, func() runtime.Object { return &appsv1.DaemonSetList{} }, nil},
	{appsv1.SchemeGroupVersion, "deployments", "deployment", true, true, func() runtime.Object { return &appsv1.Deployment{} }, func() runtime.Object { return &appsv1.DeploymentList{} }, nil},
	{appsv1.SchemeGroupVersion, "controllerrevisions", "controllerrevision", true, false, func() runtime.Object { return &appsv1.ControllerRevision{} }, func() runtime.Object { return &appsv1.ControllerRevisionList{} }, nil},
	{coordinationv1.SchemeGroupVersion, "leases", "lease", true, false, func() runtime.Object { return &coordinationv1.Lease{} }, func() runtime.Object { return &coordinationv1.LeaseList{} }, nil},
	{eventsv1.SchemeGroupVersion, "events", "event", true, false, func() runtime.Object { return &eventsv1.Event{} }, func() runtime.Object { return &eventsv1.EventList{} }, nil},
	{policyv1.SchemeGroupVersion, "poddisruptionbudgets", "poddisruptionbudget", true, true, func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} }, nil},
	{rbacv1.SchemeGroupVersion, "roles", "role", true, false, func() runtime.Object { return &rbacv1.Role{} }, func() runtime.Object { return &rbacv1.RoleList{} }, nil},
	{rbacv1.SchemeGroupVersion, "rolebindings", "rolebinding", true, false, func() runtime.Object { return &rbacv1.RoleBinding{} }, func() runtime.Object { return &rbacv1.RoleBindingList{} }, nil},
	{rbacv1.SchemeGroupVersion, "clusterroles", "clusterrole", false, false, func() runtime.Object { return &rbacv1.ClusterRole{} }, func() runtime.Object { return &rbacv1.ClusterRoleList{} }, nil},
	{rbacv1.SchemeGroupVersion, "clusterrolebindings", "clusterrolebinding", false, false, func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} }, nil},
	{admissionregistrationv1.SchemeGroupVersion, "validatingadmissionpolicies", "validatingadmissionpolicy", false, true, func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicy{} }, func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyList{} }, nil},
	{admissionregistrationv1.SchemeGroupVersion, "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", false, false, func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{} }, func() runtime.Object { return &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{} }, nil},
}

func podFields(obj runtime.Object) fields.Set {
	pod := obj.(*corev1.Pod)
	return fields.Set{"spec.nodeName": pod.Spec.NodeName, "status.phase": string(pod.Status.Phase)}
}

func nodeFields(obj runtime.Object) fields.Set {
	node := obj.(*corev1.Node)
	return fields.Set{"spec.unschedulable": fmt.Sprint(node.Spec.Unschedulable)}
}

func eventFields(obj runtime.Object) fields.Set {
	e := obj.(*corev1.Event)
	return fields.Set{
		"involvedObject.kind": e.InvolvedObject.Kind, "involvedObject.namespace": e.InvolvedObject.Namespace,
		"involvedObject.name": e.InvolvedObject.Name, "involvedObject.uid": string(e.InvolvedObject.UID),
		"involvedObject.apiVersion": e.InvolvedObject.APIVersion, "involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath": e.InvolvedObject.FieldPath, "reason": e.Reason, "reportingComponent": e.ReportingController,
		"source": e.Source.Component, "type": e.Type,
	}
}

// restOptions stores each group with its own codec (objects are stored in their external version).
type restOptions struct{ etcd *genericoptions.EtcdOptions }

func (r restOptions) GetRESTOptions(resource schema.GroupResource, _ runtime.Object) (generic.RESTOptions, error) {
	config := r.etcd.StorageConfig.ForResource(resource)
	var gv schema.GroupVersion
	for _, spec := range resources {
		if spec.gv.Group == resource.Group && spec.plural == resource.Resource {
			gv = spec.gv
		}
	}
	config.Codec = coreCodecs.LegacyCodec(gv)
	prefix := resource.Resource
	if resource.Group != "" {
		prefix = resource.Group + "/" + resource.Resource
	}
	return generic.RESTOptions{
		StorageConfig:           config,
		Decorator:               genericregistry.StorageWithCacher(),
		DeleteCollectionWorkers: 1,
		EnableGarbageCollection: r.etcd.EnableGarbageCollection,
		ResourcePrefix:          prefix,
		CountMetricPollPeriod:   time.Minute,
	}, nil
}

func attrFunc(spec resourceSpec) storage.AttrFunc {
	return func(obj runtime.Object) (labels.Set, fields.Set, error) {
		var base fields.Set
		var ls labels.Set
		var err error
		if spec.namespaced {
			ls, base, err = storage.DefaultNamespaceScopedAttr(obj)
		} else {
			ls, base, err = storage.DefaultClusterScopedAttr(obj)
		}
		if err != nil || spec.extraFields == nil {
			return ls, base, err
		}
		return ls, generic.MergeFieldsSets(base, spec.extraFields(obj)), nil
	}
}

var parameterCodec = metav1.ParameterCodec

// statusUpdater serves the status subresource: get and update (apply and patch included)
// through a copy of the store whose update strategy keeps the spec.
type statusUpdater struct{ store *genericregistry.Store }

func (r *statusUpdater) New() runtime.Object { return r.store.New() }
func (r *statusUpdater) Destroy()            {}
func (r *statusUpdater) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *statusUpdater) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *statusUpdater) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// installCore adds the core subset to the server, one API group at a time.
func installCore(server *genericapiserver.GenericAPIServer, etcd *genericoptions.EtcdOptions) error {
	groups := map[string]*genericapiserver.APIGroupInfo{}
	order := []string{}
	for _, spec := range resources {
		info, ok := groups[spec.gv.Group]
		if !ok {
			i := genericapiserver.NewDefaultAPIGroupInfo(spec.gv.Group, coreScheme, parameterCodec, coreCodecs)
			info = &i
			groups[spec.gv.Group] = info
			order = append(order, spec.gv.Group)
		}
		if info.VersionedResourcesStorageMap[spec.gv.Version] == nil {
			info.VersionedResourcesStorageMap[spec.gv.Version] = map[string]rest.Storage{}
		}
		st := newStrategy(spec)
		resource := spec.gv.WithResource(spec.plural).GroupResource()
		store := &genericregistry.Store{
			NewFunc:                   spec.newObj,
			NewListFunc:               spec.newList,
			DefaultQualifiedResource:  resource,
			SingularQualifiedResource: spec.gv.WithResource(spec.singular).GroupResource(),
			CreateStrategy:            st,
			UpdateStrategy:            st,
			DeleteStrategy:            st,
			ResetFieldsStrategy:       st,
			TableConvertor:            rest.NewDefaultTableConvertor(resource),
		}
		if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: restOptions{etcd}, AttrFunc: attrFunc(spec)}); err != nil {
			return fmt.Errorf("%s: %w", resource, err)
		}
		storages := info.VersionedResourcesStorageMap[spec.gv.Version]
		storages[spec.plural] = store
		if spec.hasStatus {
			statusStore := *store
			ss := statusStrategy{st}
			statusStore.UpdateStrategy = ss
			statusStore.ResetFieldsStrategy = ss
			storages[spec.plural+"/status"] = &statusUpdater{&statusStore}
		}
	}
	// Evictions need both the pod and the budget stores.
	core := groups[""].VersionedResourcesStorageMap["v1"]
	policy := groups["policy"].VersionedResourcesStorageMap["v1"]
	core["pods/eviction"] = &evictionREST{
		pods: core["pods"].(*genericregistry.Store),
		pdbs: policy["poddisruptionbudgets"].(*genericregistry.Store),
	}
	for _, group := range order {
		info := groups[group]
		if group == "" {
			if err := server.InstallLegacyAPIGroup("/api", info); err != nil {
				return err
			}
			continue
		}
		if err := server.InstallAPIGroup(info); err != nil {
			return err
		}
	}
	return nil
}
