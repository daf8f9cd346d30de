// Command kstatus prints the GitOps health of live objects as Flux computes it: the kstatus
// library of sigs.k8s.io/cli-utils, run against the objects the API server returns.
//
// Usage: kstatus --kubeconfig FILE GROUP/VERSION/RESOURCE/NAMESPACE/NAME ...
//
// One JSON line per object: {"object": "...", "status": "Current", "message": "..."}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Object  string `json:"object"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "the kubeconfig to read the objects with")
	flag.Parse()
	if err := run(*kubeconfig, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, objects []string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for _, object := range objects {
		parts := strings.Split(object, "/")
		if len(parts) != 5 {
			return fmt.Errorf("%q: want GROUP/VERSION/RESOURCE/NAMESPACE/NAME", object)
		}
		resource := schema.GroupVersionResource{Group: parts[0], Version: parts[1], Resource: parts[2]}
		live, err := client.Resource(resource).Namespace(parts[3]).Get(context.Background(), parts[4], v1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", object, err)
		}
		result, err := status.Compute(live)
		if err != nil {
			return fmt.Errorf("%s: %w", object, err)
		}
		if err := out.Encode(verdict{Object: object, Status: result.Status.String(), Message: result.Message}); err != nil {
			return err
		}
	}
	return nil
}
