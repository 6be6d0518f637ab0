"""A small Kubernetes API client (standard library only): kubeconfig, in-cluster, pods and NADs."""
