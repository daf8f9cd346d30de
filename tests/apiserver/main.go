// hostprocess-test-apiserver: a real Kubernetes API server for the project's tests, built from
// the upstream libraries (k8s.io/apiserver, apiextensions-apiserver) that Debian ships.
//
// It is the apiextensions-apiserver (CRDs with structural schemas, CEL validation, status
// subresources, server-side apply, watch) plus a core subset served with the generic registry
// over the k8s.io/api types: namespaces, nodes, pods, configmaps, secrets, serviceaccounts,
// events (core and events.k8s.io), leases, daemonsets, deployments, controllerrevisions,
// poddisruptionbudgets (and pods/eviction honouring them), services, RBAC (roles, bindings; stored, not enforced), and ValidatingAdmissionPolicy (+Binding) enforced by the real policy
// admission plugin. Authentication: a static token file; authorization: allow all; admission:
// NamespaceLifecycle and ValidatingAdmissionPolicy.
//
// Not a full kube-apiserver: no defaulting or type-specific validation of built-in types (that
// code lives in k8s.io/kubernetes), pods are deleted at once, and no controller runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"strings"

	noopoteltrace "go.opentelemetry.io/otel/trace/noop"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	apiextensionsopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/kube-openapi/pkg/common"
	netutils "k8s.io/utils/net"

	generatedopenapi "hostprocess.dev/testapiserver/openapi"
)

func main() {
	etcd := flag.String("etcd-servers", "http://127.0.0.1:2379", "comma-separated etcd URLs")
	port := flag.Int("secure-port", 6443, "HTTPS port on 127.0.0.1")
	certDir := flag.String("cert-dir", "", "where the self-signed serving certificate is written")
	tokenFile := flag.String("token-auth-file", "", "static tokens: token,user,uid,\"group1,group2\"")
	flag.Parse()
	if err := run(*etcd, *port, *certDir, *tokenFile); err != nil {
		fmt.Fprintf(os.Stderr, "hostprocess-test-apiserver: %v\n", err)
		os.Exit(1)
	}
}

// restMapperInitializer gives the policy admission plugin a REST mapper over this server's
// discovery (kube-apiserver wires one from its own code).
type restMapperInitializer struct{ mapper meta.RESTMapper }

func (i restMapperInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(initializer.WantsRESTMapper); ok {
		wants.SetRESTMapper(i.mapper)
	}
}

type noServices struct{}

func (noServices) ResolveEndpoint(namespace, name string, port int32) (*neturl.URL, error) {
	return nil, fmt.Errorf("this test API server resolves no services (%s/%s)", namespace, name)
}

func run(etcdServers string, port int, certDir, tokenFile string) error {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	effectiveVersion := utilcompatibility.DefaultBuildEffectiveVersion()
	globals := basecompatibility.NewComponentGlobalsRegistry()
	if err := globals.Register(basecompatibility.DefaultKubeComponent, effectiveVersion, utilfeature.DefaultMutableFeatureGate); err != nil {
		return err
	}
	o.ServerRunOptions.ComponentGlobalsRegistry = globals
	o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = strings.Split(etcdServers, ",")
	o.RecommendedOptions.SecureServing.BindAddress = netutils.ParseIPSloppy("127.0.0.1")
	o.RecommendedOptions.SecureServing.BindPort = port
	o.RecommendedOptions.SecureServing.ServerCert.CertDirectory = certDir
	o.RecommendedOptions.Admission.DisablePlugins = []string{
		"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "MutatingAdmissionPolicy",
	}
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}

	config := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRunOptions.ApplyTo(&config.Config); err != nil {
		return err
	}
	if err := o.RecommendedOptions.Etcd.ApplyTo(&config.Config); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if err := o.RecommendedOptions.SecureServing.ApplyTo(&config.SecureServing, &config.LoopbackClientConfig); err != nil {
		return fmt.Errorf("serving: %w", err)
	}
	tokens, err := tokenfile.NewCSV(tokenFile)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	config.Authentication.Authenticator = bearertoken.New(tokens)
	config.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	genericapiserver.AuthorizeClientBearerToken(config.LoopbackClientConfig, &config.Authentication, &config.Authorization)

	clientset, err := kubernetes.NewForConfig(config.LoopbackClientConfig)
	if err != nil {
		return err
	}
	dynamicClient, err := dynamic.NewForConfig(config.LoopbackClientConfig)
	if err != nil {
		return err
	}
	config.ClientConfig = config.LoopbackClientConfig
	config.SharedInformerFactory = informers.NewSharedInformerFactory(clientset, 0)
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(config.LoopbackClientConfig)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discoveryClient))
	if err := o.RecommendedOptions.Admission.ApplyTo(&config.Config, config.SharedInformerFactory, clientset, dynamicClient,
		utilfeature.DefaultFeatureGate, effectiveVersion, restMapperInitializer{mapper}); err != nil {
		return fmt.Errorf("admission: %w", err)
	}
	if err := o.APIEnablement.ApplyTo(&config.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return err
	}
	definitions := func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		merged := apiextensionsopenapi.GetOpenAPIDefinitions(ref)
		for name, def := range generatedopenapi.GetOpenAPIDefinitions(ref) {
			merged[name] = def
		}
		return merged
	}
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, coreScheme)
	config.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(definitions, namer)
	config.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(definitions, namer)

	crdConfig := &apiserver.Config{
		GenericConfig: config,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*o.RecommendedOptions.Etcd, config.ResourceTransformers, config.StorageObjectCountTracker),
			ServiceResolver:      noServices{},
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, config.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}
	server, err := crdConfig.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := installCore(server.GenericAPIServer, o.RecommendedOptions.Etcd); err != nil {
		return fmt.Errorf("core resources: %w", err)
	}
	// apiextensions turns discovery off (kube-apiserver's aggregator serves /apis); serve it here,
	// with the aggregated form that lists the core groups and the CRD groups.
	gs := server.GenericAPIServer
	wrapped := discoveryendpoint.WrapAggregatedDiscoveryToHandler(gs.DiscoveryGroupManager, gs.AggregatedDiscoveryGroupManager, gs.PeerAggregatedDiscoveryManager)
	gs.Handler.GoRestfulContainer.Add(wrapped.GenerateWebService("/apis", metav1.APIGroupList{}))
	server.GenericAPIServer.AddPostStartHookOrDie("reset-rest-mapper", func(ctx genericapiserver.PostStartHookContext) error {
		mapper.Reset()
		return nil
	})
	return server.GenericAPIServer.PrepareRun().RunWithContext(context.Background())
}
