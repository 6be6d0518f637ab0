"""CNI_ARGS the meta-plugin hands to delegates: the runtime's IP=/MAC= stay with the pod's primary interface."""

from __future__ import annotations

from multiplane.plugins.meta.plan import PodRef, cni_args_for


def test_runtime_ip_and_mac_reach_only_the_cluster_network() -> None:
    """podman's --ip/--mac-address (IP=, MAC=) go to the cluster network; a secondary gets only its selection's."""
    pod = PodRef(
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAME", "web"),
            ("IP", "10.66.0.40"),
            ("MAC", "02:00:00:00:00:01"),
            ("X", "y"),
        ]
    )
    master = cni_args_for(pod, [], master=True)
    secondary = cni_args_for(pod, [("IP", "10.67.0.5")])
    assert "IP=10.66.0.40" in master and "MAC=02:00:00:00:00:01" in master and "X=y" in master
    assert "10.66.0.40" not in secondary and "MAC=" not in secondary
    assert secondary.endswith("X=y;IP=10.67.0.5")


def test_networks_in_cni_args_work_without_a_namespace() -> None:
    """With MULTIPLANE_NETWORKS but no K8S_POD_NAMESPACE (podman), the pod is taken to be in "default"."""
    pod = PodRef([("K8S_POD_NAME", "web"), ("MULTIPLANE_NETWORKS", "mp-fast")])
    assert (pod.namespace, pod.name, pod.known) == ("default", "web", True)
    assert PodRef([("K8S_POD_NAME", "web")]).known is False
