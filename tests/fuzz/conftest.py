"""Fuzz suite set-up: example counts, the sandbox root, and the configs each personality is fuzzed from.

`make test` runs every fuzz test with its default count, derandomised (the same cases each
run, so a failure is reproducible and a pass means the same thing twice). `make fuzz`
sets MP_FUZZ_EXAMPLES (and may set MP_FUZZ_SEED): every in-process test then runs that many
random examples, and the subprocess samples a fiftieth of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.harness import PREFIX, Answer, OracleFailure, Sandbox, judge, run_inprocess
from tests.integration.meta_helpers import ip_files, nad_document

FUZZ_EXAMPLES = int(os.environ.get("MP_FUZZ_EXAMPLES") or 0)


def fuzz_settings(default: int, share: float = 1.0) -> settings:
    """`default` examples in `make test`; MP_FUZZ_EXAMPLES × `share` under `make fuzz`."""
    count = max(default, int(FUZZ_EXAMPLES * share)) if FUZZ_EXAMPLES else default
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=not FUZZ_EXAMPLES,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(PREFIX)


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meta-plugin must never find a real cluster from the test's environment."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


class Node:
    """A sandbox laid out for all three personalities: configs, NADs, pod manifests, an empty binDir."""

    CLUSTER = f"{PREFIX}-cluster"
    NETWORK = f"{PREFIX}-net"
    META = f"{PREFIX}-meta"
    NADS = (f"{PREFIX}-a", f"{PREFIX}-b", f"{PREFIX}-ext", f"{PREFIX}-broken")
    NAMESPACE = "mp-app"
    POD = "mp-web"

    def __init__(self, root: Path) -> None:
        self.sb = Sandbox(root)
        sb = self.sb
        self.ipam = sb.path("ipam")
        self.bin = sb.path("bin")
        self.cni_dir = sb.path("cni")
        for d in ("net.d", "nads", "pods", "bin", "log", "ipam"):
            os.makedirs(sb.path(d))
        self._write(
            "net.d/10-cluster.conf",
            {
                "cniVersion": "1.0.0",
                "name": self.CLUSTER,
                "type": "host-local",
                "ipam": self.host_local_ipam("10.250.0.0/29"),
            },
        )
        a, b, ext, broken = self.NADS
        self.add_nad(a, {"cniVersion": "1.0.0", "type": "host-local", "ipam": self.host_local_ipam("10.250.1.0/29")})
        self.add_nad(
            b,
            {
                "cniVersion": "1.1.0",
                "plugins": [
                    {"type": "host-local", "ipam": self.host_local_ipam("10.250.2.0/29", "fd00:fa::/125")},
                    {"type": "multiplane-host-local", "ipam": self.host_local_ipam("10.250.3.0/29")},
                ],
            },
        )
        self.add_nad(ext, {"cniVersion": "1.0.0", "type": f"{PREFIX}-missing-plugin"})
        self.add_nad(broken, '{"cniVersion": "1.0.0", "type": ')

    def _write(self, rel: str, obj: Any) -> str:
        path = self.sb.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def host_local_ipam(self, *subnets: str) -> dict[str, Any]:
        return {"type": "host-local", "dataDir": self.ipam, "ranges": [[{"subnet": s}] for s in subnets]}

    def add_nad(self, name: str, config: Any, namespace: str | None = None) -> str:
        return self._write(f"nads/{name}.json", nad_document(name, config, namespace))

    def add_pod(self, annotations: Any, text: str | None = None, ext: str = ".json") -> str:
        """A pod manifest in localPodDir; `text` replaces the whole file (to fuzz the manifest itself)."""
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": self.POD, "namespace": self.NAMESPACE}}
        doc["metadata"]["annotations"] = annotations
        return self._write(f"pods/{self.NAMESPACE}/{self.POD}{ext}", text if text is not None else doc)

    # ---- the request configs the fuzzer starts from ----

    def conf(self, personality: str, version: str = "1.0.0") -> dict[str, Any]:
        if personality == "multiplane-host-local":
            return {
                "cniVersion": version,
                "name": self.NETWORK,
                "type": "host-local",
                "ipam": {**self.host_local_ipam("10.250.4.0/29"), "routes": [{"dst": "0.0.0.0/0"}]},
            }
        if personality == "multiplane-macvlan":
            return {
                "cniVersion": version,
                "name": self.NETWORK,
                "type": "macvlan",
                "master": f"{PREFIX}-nomaster",
                "mode": "bridge",
                "ipam": self.host_local_ipam("10.250.5.0/29"),
            }
        return {
            "cniVersion": version,
            "name": self.META,
            "type": "multiplane",
            "clusterNetwork": self.CLUSTER,
            "confDir": self.sb.path("net.d"),
            "cniDir": self.cni_dir,
            "binDir": self.bin,
            "localNADDir": self.sb.path("nads"),
            "localPodDir": self.sb.path("pods"),
            "logFile": self.sb.path("log", "multiplane.log"),
            "logLevel": "debug",
        }

    def env(self, command: str = "ADD", netns: str | None = None, **extra: str | bytes | None) -> dict[str, Any]:
        """CNI_* values (str or bytes; None leaves a variable out). CNI_PATH is only the sandbox's binDir."""
        env: dict[str, Any] = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"{PREFIX}-c1",
            "CNI_NETNS": netns if netns is not None else str(self.sb.ro / "no-such-netns"),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.bin,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.NAMESPACE};K8S_POD_NAME={self.POD}",
        }
        env.update(extra)
        return env

    def close(self) -> None:
        self.sb.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def leftovers(node: Node) -> list[str]:
    """Reservations anywhere in the sandbox's state, and files in the meta-plugin's cniDir."""
    found = ip_files(node.sb.state)
    for root, _dirs, files in os.walk(node.cni_dir):
        found += [os.path.join(root, f) for f in files]
    return found


def run_case_env(node: Node, personality: str, env: dict[str, str], stdin: bytes) -> Answer:
    """One in-process call under the whole oracle; a failed ADD must also leave no state behind."""
    answer = judge(node.sb, lambda: run_inprocess(personality, env, stdin, node.sb), stdin, (node.ipam,))
    if answer.command == "ADD" and answer.status == 1 and leftovers(node):
        raise OracleFailure(f"a failed ADD left state behind: {leftovers(node)}\nstdout: {answer.stdout}")
    return answer
