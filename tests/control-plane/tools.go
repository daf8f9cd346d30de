//go:build tools

// Package tools keeps the control plane's modules in go.mod and go.sum: build.sh builds their
// commands (`go build k8s.io/kubernetes/cmd/kube-apiserver`, …), which cannot be imported.
package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
)
