"""`multiplane validate`: the seed NAD's warning, agreement with the CNI path, JSON paths, schemas, the entry point.

The agreement table is the heart of it: every row is a document (or a NAD with a pod) that
`multiplane validate` and the real CNI-path parsers must both accept or both reject. The
CNI side is what a pod's ADD runs before it touches the kernel:
* a NAD: selection.parse of its name, LocalSource.nad (the local NAD directory lookup),
  nad_config, then, for each plugin, the stdin the runner builds (runner._stdin) through
  skel.dispatch (NetConf.parse, the version gate) into MacvlanConf / Macvlan.add (up to
  opening the pod's netns, which fails on purpose) and ipam.config.load for host-local;
* a pod: annotations_of and plan() (selection.parse, the default-network annotation,
  interface names, the `ips` capability check) with a source that serves the row's NADs
  (and a stand-in NAD for any other name), then each selected NAD's plugins probed as above
  with the pod's capability values and CNI_ARGS;
* 00-multiplane.conf: skel.dispatch → MetaConf, and its inline delegates like NAD plugins;
* a bridge plugin's own keys are decoded by the bridge binary, not by multiplane: rows that
  test them also run /usr/lib/cni/bridge (in a throwaway network namespace) and need root.
Rows that only a running kernel or host-local's allocator could refuse are in EXCLUDED,
with the reason; there the test checks that validate refuses and the parsers accept.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import multiplane
from multiplane import skel
from multiplane.errors import InvalidEnvironment
from multiplane.ipam import config as ipam_config
from multiplane.plugins.macvlan import Macvlan
from multiplane.plugins.meta import selection
from multiplane.plugins.meta.config import MetaConf
from multiplane.plugins.meta.networks import LocalSource, NetworkConfig, annotations_of, load_file, nad_config
from multiplane.plugins.meta.plan import PodRef, cni_args_for, plan
from multiplane.plugins.meta.call import Call as _Call
from multiplane.plugins.meta.runner import _stdin
from multiplane.spec.gojson import field
from multiplane.spec.netconf import NetConf
from multiplane.tools import validate
from multiplane.tools.validate import schemas
from tests.cni import OURS_MULTIPLANE

REPO = Path(__file__).resolve().parents[2]
SEED_NAD = REPO / "cni" / "nads" / "macvlan.yaml"
SCHEMA_DIR = REPO / "docs" / "schemas"
REFERENCE_BRIDGE = "/usr/lib/cni/bridge"


# ---- building documents ----------------------------------------------------------------------------


def nad(
    config: dict[str, Any] | str | None, name: str = "macvlan-conf", namespace: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    text = config if isinstance(config, str) or config is None else json.dumps(config)
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": text},
    }


def pod(annotations: dict[str, Any] | None, name: str = "web-1", namespace: str | None = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "a", "image": "b"}]}}


def networks(value: Any) -> dict[str, Any]:
    return {selection.NETWORKS_ANNOTATION: value if isinstance(value, str) else json.dumps(value)}


def host_local(**ipam: Any) -> dict[str, Any]:
    return {"type": "host-local", **ipam}


RANGE = {"subnet": "10.174.0.0/24", "rangeStart": "10.174.0.200", "rangeEnd": "10.174.0.216", "gateway": "10.174.0.1"}


def macvlan(version: str = "1.0.0", **keys: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "type": "macvlan",
        "master": "ens33",
        "mode": "bridge",
        "ipam": host_local(ranges=[[dict(RANGE)]]),
    }
    for key, value in keys.items():
        if value is None:
            conf.pop(key, None)
        else:
            conf[key] = value
    return conf


def seed_config() -> dict[str, Any]:
    return json.loads(yaml.safe_load(SEED_NAD.read_text())["spec"]["config"])


META = {
    "cniVersion": "1.0.0",
    "name": "multiplane-cni-network",
    "type": "multiplane",
    "clusterNetwork": "/etc/cni/net.d/10-flannel.conflist",
}


def meta(**keys: Any) -> dict[str, Any]:
    out = dict(META)
    for key, value in keys.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# ---- the CNI path as an oracle ------------------------------------------------------------------------

_HOST_LOCAL = ("host-local", "multiplane-host-local")


class _Accepted(Exception):
    """The probe got through every check that does not need the kernel."""


class _Probe:
    """A plugin for skel.dispatch that runs the real config readers of the plugin the config names."""

    name = "probe"

    def add(self, req: skel.Request) -> Any:
        kind = req.conf.type
        if kind == "multiplane":
            conf = _Call(req).conf  # MetaConf, and the keys the call reads itself (events, logOptions)
            for index, item in enumerate(conf.delegates):
                net = NetworkConfig.parse(json.dumps(item).encode(), f"delegate {index}")
                for plugin in net.plugins:
                    probe_plugin(plugin, net)
        if kind in ("macvlan", "multiplane-macvlan"):
            try:
                Macvlan().add(req)
            except InvalidEnvironment as exc:  # the netns is missing on purpose: every config check passed
                if not exc.msg.startswith("failed to open netns"):
                    raise
        ipam = field(req.conf.raw, "ipam")  # run by the main plugin (in-process or exec'd); not by multiplane itself
        if kind != "multiplane" and isinstance(ipam, dict) and field(ipam, "type") in _HOST_LOCAL:
            ipam_config.load(req.conf.raw, req.conf.name, req.conf.cni_version, req.args.args)
        raise _Accepted


def probe_plugin(
    plugin: dict[str, Any],
    net: NetworkConfig,
    caps: dict[str, Any] | None = None,
    args: str = "",
    args_cni: dict[str, Any] | None = None,
) -> None:
    stdin = _stdin(plugin, net, None, caps or {}, args_cni)
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "validate-agreement",
        "CNI_NETNS": "/nonexistent/validate-agreement",
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": args or cni_args_for(PodRef([]), []),
    }
    try:
        skel.dispatch(_Probe(), env, stdin)
    except _Accepted:
        pass


def reference_bridge_accepts(plugin: dict[str, Any], net: NetworkConfig) -> bool:
    """The bridge binary's own decoder: loadNetConf runs first and fails with "failed to load netconf: …".

    Anything after it (creating the bridge in the throwaway namespace, opening the missing
    netns) is past the config and does not count.
    """
    proc = subprocess.run(
        ["unshare", "--net", REFERENCE_BRIDGE],
        input=_stdin(plugin, net, None, {}, None),
        env={
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "validate-agreement",
            "CNI_NETNS": "/nonexistent/validate-agreement",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni",
        },
        capture_output=True,
        timeout=30,
        check=False,
    )
    reply = json.loads(proc.stdout)
    return not str(reply.get("msg", "")).startswith("failed to load netconf")


class _Source:
    """The row's NADs; any other name is a stand-in NAD (a stub plugin that declares `ips`)."""

    def __init__(self, nads: list[dict[str, Any]]) -> None:
        self.nads = nads

    def nad(self, namespace: str, name: str) -> dict[str, Any]:
        for doc in self.nads:
            meta = doc.get("metadata") or {}
            if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                return doc
        stub = {"cniVersion": "1.0.0", "type": "stub", "capabilities": {"ips": True}}
        return {"metadata": {"name": name, "namespace": namespace}, "spec": {"config": json.dumps(stub)}}


def cni_accepts(docs: list[Any], tmp: Path) -> bool:
    """What the CNI path decides for these documents (True: nothing refuses them).

    A refusal must be the CNI path's own error (a CniError, or NotFound for a NAD it cannot
    find); any other exception is a bug (of the CNI path or of this oracle) and fails the test.
    """
    from multiplane.errors import CniError
    from multiplane.k8s.errors import NotFound

    try:
        cni_accepts_raise(docs, tmp)
    except (CniError, NotFound, _BridgeRefuses):
        return False
    return True


class _BridgeRefuses(Exception):
    pass


def cni_accepts_raise(docs: list[Any], tmp: Path, only: Any = None) -> None:
    """The CNI path over the documents (or just `only`, with all of them in place); raises what refuses them."""
    nad_dir, conf_dir = tmp / "nads", tmp / "confdir"
    nad_dir.mkdir(exist_ok=True)
    conf_dir.mkdir(exist_ok=True)
    nads = [d for d in docs if isinstance(d, dict) and d.get("kind") == "NetworkAttachmentDefinition"]
    for index, doc in enumerate(nads):
        (nad_dir / f"{index}.json").write_text(json.dumps(doc))
    for doc in docs if only is None else [only]:
        if isinstance(doc, (str, bytes)):  # a CNI file's bytes
            raw = doc.encode() if isinstance(doc, str) else doc
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None  # NetworkConfig.parse / NetConf.parse report it
            if isinstance(obj, dict) and field(obj, "type") == "multiplane":
                _dispatch_meta(raw)
            else:
                _probe_all(NetworkConfig.parse(raw, "file"))
        elif doc.get("kind") == "NetworkAttachmentDefinition":
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = meta.get("namespace", "default") if isinstance(meta, dict) else "default"
            chosen = selection.parse(json.dumps([{"name": name, "namespace": ns}]), "default")
            found = LocalSource(str(nad_dir), str(tmp / "pods"), {}, {}).nad(chosen[0].namespace, chosen[0].name)
            _probe_all(nad_config(found, str(conf_dir)))
        elif doc.get("kind") == "Pod":
            _plan_pod(doc, nads)
        else:
            raise AssertionError(f"no oracle for {doc!r}")


def _probe_all(net: NetworkConfig) -> None:
    for plugin in net.plugins:
        probe_plugin(plugin, net)
        if field(plugin, "type") == "bridge" and not reference_bridge_accepts(plugin, net):
            raise _BridgeRefuses("the bridge binary refuses it")


def _dispatch_meta(raw: bytes) -> None:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c",
        "CNI_NETNS": "/nonexistent",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    try:
        skel.dispatch(_Probe(), env, raw)
    except _Accepted:
        pass


_STUB_META = b'{"cniVersion":"1.0.0","name":"m","type":"multiplane","clusterNetwork":"stub-cluster"}'


def _plan_pod(doc: dict[str, Any], nads: list[dict[str, Any]]) -> None:
    meta = doc.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    ref = PodRef([("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", "p")])
    ref.annotations = annotations_of(doc, "pod")
    conf = MetaConf(NetConf.parse(_STUB_META))
    for delegate in plan(conf, _Source(nads), ref, "eth0")[1:]:
        for plugin in delegate.net.plugins:
            probe_plugin(plugin, delegate.net, delegate.cap_args, delegate.cni_args, delegate.args_cni)


# ---- running validate --------------------------------------------------------------------------------


def validate_docs(docs: list[Any], tmp: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """`multiplane validate --json` over the documents (YAML for objects, a .conf file for raw CNI bytes)."""
    paths = []
    objects = [d for d in docs if isinstance(d, dict)]
    if objects:
        path = tmp / "docs.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        paths.append(str(path))
    for index, doc in enumerate(d for d in docs if not isinstance(d, dict)):
        path = tmp / f"file{index}.conf"
        path.write_bytes(doc.encode() if isinstance(doc, str) else doc)
        paths.append(str(path))
    return run_main([*paths, "--json", "--no-node-addresses", "--conf-dir", str(tmp / "confdir"), *extra])


def run_main(argv: list[str]) -> tuple[int, dict[str, Any]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = validate.main(argv)
    text = out.getvalue()
    return status, (json.loads(text) if text.startswith("{") else {"text": text})


# ---- the table -----------------------------------------------------------------------------------------

OK, BAD = True, False
ROWS: list[tuple[str, list[Any], bool]] = [
    # NADs that work
    ("seed NAD, unchanged", [yaml.safe_load(SEED_NAD.read_text())], OK),
    ("macvlan, ranges form, 1.0.0", [nad(macvlan())], OK),
    ("macvlan without IPAM at 1.0.0 (L2 only)", [nad(macvlan(ipam=None))], OK),
    (
        "keys in any case, as Go reads them",
        [nad({"CNIVersion": "1.0.0", "Type": "macvlan", "MODE": "vepa", "IPAM": host_local(Ranges=[[RANGE]])})],
        OK,
    ),
    ("mtu as an integral float", [nad(macvlan(mtu=1500.0))], OK),
    ("config without a name takes the NAD's", [nad(macvlan(name=None))], OK),
    (
        "gateway outside its subnet (on-link)",
        [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "10.1.0.0/24", "gateway": "10.9.9.9"}]])))],
        OK,
    ),
    ("IPv6 range", [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "2001:db8::/64"}]])))], OK),
    ("dual stack at 1.0.0", [nad(macvlan(ipam=host_local(ranges=[[RANGE], [{"subnet": "2001:db8::/64"}]])))], OK),
    (
        "conflist: macvlan then tuning",
        [nad({"cniVersion": "1.0.0", "plugins": [macvlan(cniVersion=None), {"type": "tuning"}]})],
        OK,
    ),
    (
        "an exec'd plugin with static IPAM",
        [nad({"cniVersion": "1.0.0", "type": "ipvlan", "master": "eth1", "ipam": {"type": "static"}})],
        OK,
    ),
    (
        "legacy keys ignored without ipam.subnet",
        [nad(macvlan(ipam=host_local(rangeStart="junk", ranges=[[RANGE]])))],
        OK,
    ),
    (
        "config mac overridden by runtimeConfig.mac",
        [nad(macvlan(mac="junk", runtimeConfig={"mac": "0a:58:0a:f4:00:02"}))],
        OK,
    ),
    (
        "conflist with a stray non-object plugin (skipped)",
        [nad({"cniVersion": "1.0.0", "plugins": [macvlan(cniVersion=None), 5]})],
        OK,
    ),
    (
        "bridge with host-local",
        [
            nad(
                {
                    "cniVersion": "0.4.0",
                    "type": "bridge",
                    "bridge": "br0",
                    "isGateway": True,
                    "vlan": 10,
                    "ipam": host_local(subnet="10.5.0.0/24"),
                }
            )
        ],
        OK,
    ),
    # NADs that fail
    ("broken JSON in spec.config", [nad('{"cniVersion": "1.0.0", "type": "macvlan",')], BAD),
    ("spec.config is a number", [{**nad(None), "spec": {"config": 5}}], BAD),
    ("spec.config is a JSON list", [nad("[1, 2]")], BAD),
    ("NaN in spec.config", [nad('{"cniVersion": "1.0.0", "type": "macvlan", "mtu": NaN}')], BAD),
    ("NAD name not a DNS-1123 subdomain", [nad(macvlan(), name="Macvlan_Conf")], BAD),
    ("NAD namespace not a DNS-1123 label", [nad(macvlan(), namespace="Team.A")], BAD),
    ("no type and no plugins", [nad({"cniVersion": "1.0.0", "master": "ens33"})], BAD),
    ("empty plugins list", [nad({"cniVersion": "1.0.0", "plugins": []})], BAD),
    (
        "first plugin without a type",
        [nad({"cniVersion": "1.0.0", "plugins": [{"master": "ens33"}, {"type": "tuning"}]})],
        BAD,
    ),
    ("bad macvlan mode", [nad(macvlan(mode="bridged"))], BAD),
    ("mtu as a string", [nad(macvlan(mtu="1500"))], BAD),
    ("master as a number", [nad(macvlan(master=5))], BAD),
    ("linkInContainer as a string", [nad(macvlan(linkInContainer="yes"))], BAD),
    ("multicast mac", [nad(macvlan(mac="01:00:5e:00:00:01"))], BAD),
    ("ipam as a string", [nad(macvlan(ipam="host-local"))], BAD),
    ("ipam type as a number", [nad(macvlan(ipam={"type": 5}))], BAD),
    ("dns.nameservers as a string", [nad(macvlan(dns={"nameservers": "8.8.8.8"}))], BAD),
    ("L2 only at 0.2.0", [nad(macvlan("0.2.0", ipam=None))], BAD),
    ("cniVersion not supported", [nad(macvlan("9.9.9"))], BAD),
    ("cniVersion as a number", [nad(macvlan(1))], BAD),
    ("network name with a space", [nad(macvlan(name="my net"))], BAD),
    ("plugin type with a slash", [nad(macvlan(type="../evil"))], BAD),
    ("subnet not a CIDR", [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "10.174.0.0/33"}]])))], BAD),
    ("subnet with host bits", [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "10.174.0.1/24"}]])))], BAD),
    ("subnet too small", [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "10.174.0.0/31"}]])))], BAD),
    (
        "rangeStart outside the subnet",
        [nad(macvlan(ipam=host_local(ranges=[[{**RANGE, "rangeStart": "10.175.0.1"}]])))],
        BAD,
    ),
    ("range without a subnet", [nad(macvlan(ipam=host_local(ranges=[[{"rangeStart": "10.174.0.5"}]])))], BAD),
    ("empty range set", [nad(macvlan(ipam=host_local(ranges=[[]])))], BAD),
    ("no ranges at all", [nad(macvlan(ipam=host_local()))], BAD),
    ("overlapping range sets", [nad(macvlan(ipam=host_local(ranges=[[RANGE], [{"subnet": "10.174.0.0/24"}]])))], BAD),
    ("mixed families in one set", [nad(macvlan(ipam=host_local(ranges=[[RANGE, {"subnet": "2001:db8::/64"}]])))], BAD),
    (
        "two IPv4 sets at 0.2.0",
        [nad(macvlan("0.2.0", ipam=host_local(ranges=[[RANGE], [{"subnet": "10.9.0.0/24"}]])))],
        BAD,
    ),
    ("route dst not a CIDR", [nad(macvlan(ipam=host_local(ranges=[[RANGE]], routes=[{"dst": "default"}])))], BAD),
    ("route without dst", [nad(macvlan(ipam=host_local(ranges=[[RANGE]], routes=[{"gw": "10.174.0.1"}])))], BAD),
    (
        "route gw not an IP",
        [nad(macvlan(ipam=host_local(ranges=[[RANGE]], routes=[{"dst": "0.0.0.0/0", "gw": "10.174.0.300"}])))],
        BAD,
    ),
    ("relative dataDir", [nad(macvlan(ipam=host_local(ranges=[[RANGE]], dataDir="state/networks")))], BAD),
    ("args.cni.ips with a bad address", [nad(macvlan(args={"cni": {"ips": ["10.174.0.999"]}}))], BAD),
    ("runtimeConfig.ips not a list", [nad(macvlan(runtimeConfig={"ips": "10.174.0.201"}))], BAD),
    (
        "bridge: isGateway as a string (the bridge binary refuses it)",
        [nad({"cniVersion": "0.4.0", "type": "bridge", "isGateway": "true", "ipam": host_local(subnet="10.5.0.0/24")})],
        BAD,
    ),
    ("bridge: mtu as a float", [nad({"cniVersion": "0.4.0", "type": "bridge", "mtu": 1500.0})], BAD),
    # an empty spec.config: the CNI file of that name in confDir (none there)
    ("empty spec.config and no file in confDir", [nad("")], BAD),
    # 00-multiplane.conf and plain CNI files
    ("cni/00-multiplane.conf", [(REPO / "cni" / "00-multiplane.conf").read_text()], OK),
    (
        "cni/10-macvlan-multiplane-ipam.conflist",
        [(REPO / "cni" / "10-macvlan-multiplane-ipam.conflist").read_text()],
        OK,
    ),
    ("multiplane: unknown logLevel is only logged", [json.dumps(meta(logLevel="chatty"))], OK),
    (
        "multiplane: inline delegates",
        [json.dumps(meta(clusterNetwork=None, delegates=[{"cniVersion": "1.0.0", "name": "d", "type": "bridge"}]))],
        OK,
    ),
    ("multiplane: neither clusterNetwork nor delegates", [json.dumps(meta(clusterNetwork=None))], BAD),
    ("multiplane: relative cniDir", [json.dumps(meta(cniDir="var/lib/cni"))], BAD),
    ("multiplane: defaultNetworks entry not a string", [json.dumps(meta(defaultNetworks=[5]))], BAD),
    ("multiplane: namespaceIsolation as a string", [json.dumps(meta(namespaceIsolation="true"))], BAD),
    ("multiplane: events as a string", [json.dumps(meta(events="no"))], BAD),
    (
        "multiplane: events false, logOptions of the wrong types (logged)",
        [json.dumps(meta(events=False, logOptions={"maxSize": "big", "compress": 1}))],
        OK,
    ),
    ("multiplane: no name", [json.dumps(meta(name=None))], BAD),
    (
        "multiplane: a delegate with a bad macvlan mode",
        [
            json.dumps(
                meta(
                    clusterNetwork=None,
                    delegates=[{"cniVersion": "1.0.0", "name": "d", "type": "macvlan", "mode": "x"}],
                )
            )
        ],
        BAD,
    ),
    ("plain file: invalid JSON", ['{"cniVersion": "1.0.0", "name": "n", "type": "macvlan"'], BAD),
    ("plain file: no name", [json.dumps(macvlan())], BAD),
    # pods
    ("seed pod", [yaml.safe_load((REPO / "cni" / "pods" / "default" / "web-1.yaml").read_text())], OK),
    ("no annotations", [pod(None)], OK),
    ("text form with namespace and interface", [pod(networks("other/macvlan-conf@fast0, macvlan-conf"))], OK),
    (
        "JSON form with ips, mac and default-route",
        [
            pod(
                networks(
                    [
                        {
                            "name": "macvlan-conf",
                            "ips": ["10.174.0.201/24"],
                            "mac": "0a:58:0a:f4:00:02",
                            "default-route": ["10.174.0.1"],
                        }
                    ]
                )
            )
        ],
        OK,
    ),
    ("JSON form: a falsy mac is ignored", [pod(networks([{"name": "macvlan-conf", "mac": 0}]))], OK),
    ("default-network annotation naming one network", [pod({selection.DEFAULT_NETWORK_ANNOTATION: "other-net"})], OK),
    ("text form: namespace not a label", [pod(networks("Team/macvlan-conf"))], BAD),
    ("text form: two slashes", [pod(networks("a/b/c"))], BAD),
    ("text form: interface too long", [pod(networks("macvlan-conf@averyveryverylongname"))], BAD),
    ("JSON form: bad IP", [pod(networks([{"name": "macvlan-conf", "ips": ["10.174.0.999"]}]))], BAD),
    ("JSON form: bad mac", [pod(networks([{"name": "macvlan-conf", "mac": "zz:zz"}]))], BAD),
    ("JSON form: no name", [pod(networks([{"namespace": "default"}]))], BAD),
    ("JSON form: not a list", [pod(networks({"name": "macvlan-conf"}))], BAD),
    ("JSON form: broken JSON", [pod(networks('[{"name": }]'))], BAD),
    (
        "two IPv4 default-route gateways (ECMP)",
        [pod(networks([{"name": "a", "default-route": ["10.0.0.1"]}, {"name": "b", "default-route": ["10.0.1.1"]}]))],
        BAD,
    ),
    ("default-network annotation naming two networks", [pod({selection.DEFAULT_NETWORK_ANNOTATION: "a,b"})], BAD),
    ("annotation values that are not strings", [pod({"replicas": 5})], BAD),
    ("the same interface twice", [pod(networks("a@fast0, b@fast0"))], BAD),
    ("an explicit net1 that the first network already gets", [pod(networks("a, b@net1"))], BAD),
    ("interface eth0 (the cluster network's)", [pod(networks("a@eth0"))], BAD),
    # a NAD with a pod
    (
        "two ips, and the NAD declares the ips capability",
        [
            nad(macvlan(ipam=host_local(ranges=[[RANGE]]), capabilities={"ips": True})),
            pod(networks([{"name": "macvlan-conf", "ips": ["10.174.0.201", "10.174.0.202"]}])),
        ],
        OK,
    ),
    (
        "two ips, and no plugin declares the ips capability",
        [nad(macvlan()), pod(networks([{"name": "macvlan-conf", "ips": ["10.174.0.201", "10.174.0.202"]}]))],
        BAD,
    ),
    ("a NUL character in spec.config", [nad(json.dumps(macvlan()).replace('"ens33"', '"ens\\u000033"'))], BAD),
    (
        "a lone surrogate in spec.config (read as U+FFFD)",
        [nad(json.dumps(macvlan()).replace('"ens33"', '"ens\\ud80033"'))],
        OK,
    ),
    (
        "cni-args with ips that host-local cannot read",
        [nad(macvlan()), pod(networks([{"name": "macvlan-conf", "cni-args": {"ips": "10.174.0.201"}}]))],
        BAD,
    ),
    (
        "cni-args with ips that host-local reads",
        [nad(macvlan()), pod(networks([{"name": "macvlan-conf", "cni-args": {"ips": ["10.174.0.201"]}}]))],
        OK,
    ),
    (
        "a multicast mac for a macvlan NAD",
        [nad(macvlan()), pod(networks([{"name": "macvlan-conf", "mac": "01:00:5e:00:00:01"}]))],
        BAD,
    ),
]

# validate refuses these; the CNI path refuses them only where this test cannot follow it.
EXCLUDED: list[tuple[str, list[Any], str]] = [
    (
        "macvlan mtu -1",
        [nad(macvlan(mtu=-1))],
        "the ADD compares mtu with the master's MTU after looking the master up (a kernel link), so the parsers accept it",
    ),
    (
        "a requested address outside the NAD's ranges",
        [nad(macvlan()), pod(networks([{"name": "macvlan-conf", "ips": ["10.9.9.9"]}]))],
        "host-local's allocator refuses it at ADD under its state directory's lock, after the config is read",
    ),
]


def _needs_bridge(docs: list[Any]) -> bool:
    """Whether a document holds a plugin of type bridge (its own keys need the bridge binary as oracle)."""
    stack: list[Any] = list(docs)
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node = json.loads(node)
            except ValueError:
                continue
        if isinstance(node, dict):
            if field(node, "type") == "bridge":
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _bridge_oracle() -> bool:
    return os.geteuid() == 0 and os.path.exists(REFERENCE_BRIDGE) and shutil.which("unshare") is not None


@pytest.mark.parametrize(("docs", "expected"), [pytest.param(d, e, id=i) for i, d, e in ROWS if not _needs_bridge(d)])
def test_validate_and_cni_path_agree(docs: list[Any], expected: bool, tmp_path: Path) -> None:
    """Every row: validate and the CNI path's parsers both accept it, or both refuse it, as the table says."""
    status, report = validate_docs(docs, tmp_path)
    cni = cni_accepts(docs, tmp_path)
    assert (status == 0, cni) == (expected, expected), report.get("diagnostics", report)


@pytest.mark.root
@pytest.mark.parametrize(("docs", "expected"), [pytest.param(d, e, id=i) for i, d, e in ROWS if _needs_bridge(d)])
def test_validate_and_the_reference_bridge_agree(docs: list[Any], expected: bool, tmp_path: Path) -> None:
    """The bridge rows: the CNI side is Debian's bridge itself (under unshare --net), so they need root."""
    if not _bridge_oracle():
        pytest.fail(f"{REFERENCE_BRIDGE} and unshare are needed: make setup installs them")
    status, report = validate_docs(docs, tmp_path)
    cni = cni_accepts(docs, tmp_path)
    assert (status == 0, cni) == (expected, expected), report.get("diagnostics", report)


def test_table_is_big_enough() -> None:
    """The table has at least 30 rows, good and bad ones."""
    assert len(ROWS) >= 30
    assert sum(1 for *_, e in ROWS if e) >= 10 and sum(1 for *_, e in ROWS if not e) >= 20


@pytest.mark.parametrize(("docs", "reason"), [pytest.param(d, r, id=i) for i, d, r in EXCLUDED])
def test_excluded_rows_are_refused_by_validate_only(docs: list[Any], reason: str, tmp_path: Path) -> None:
    """Checks validate makes that this test cannot reach on the CNI path (see each reason): validate refuses, the parsers accept."""
    status, report = validate_docs(docs, tmp_path)
    assert status == 1, report
    assert cni_accepts(docs, tmp_path), f"the CNI path now refuses it: move the row to ROWS ({reason})"


# Malformed NAD objects: both refuse them, the CNI path with a CniError naming the problem
# (it used to crash with an AttributeError, internal error 999).
MALFORMED: list[tuple[str, list[Any]]] = [
    ("spec is a string", [{**nad(macvlan()), "spec": "oops"}]),
    ("spec is a list", [{**nad(macvlan()), "spec": [macvlan()]}]),
    (
        "a manifest with a non-object metadata before a good NAD in localNADDir",
        [{**nad(macvlan()), "metadata": "broken"}, nad(macvlan())],
    ),
]


@pytest.mark.parametrize("docs", [pytest.param(d, id=i) for i, d in MALFORMED])
def test_malformed_nad_objects_are_refused_by_both(docs: list[Any], tmp_path: Path) -> None:
    """validate refuses these with a path; the CNI path refuses the last document too, as a config error (code 7)."""
    from multiplane.errors import CniError

    status, report = validate_docs(docs, tmp_path)
    assert status == 1, report
    assert report["diagnostics"][0]["path"] in ("$.spec", "$.metadata")
    with pytest.raises(CniError) as caught:
        cni_accepts_raise(docs, tmp_path, only=docs[-1])
    assert caught.value.code == 7


def test_empty_config_uses_the_file_in_conf_dir(tmp_path: Path) -> None:
    """An empty spec.config is the CNI file with the NAD's name in confDir: found and checked, by both."""
    (tmp_path / "confdir").mkdir()
    (tmp_path / "confdir" / "20-lan.conf").write_text(json.dumps({**macvlan(), "name": "macvlan-conf"}))
    docs = [nad("")]
    status, report = validate_docs(docs, tmp_path)
    assert (status, cni_accepts(docs, tmp_path)) == (0, True), report
    (tmp_path / "confdir" / "20-lan.conf").write_text(json.dumps({**macvlan(mode="x"), "name": "macvlan-conf"}))
    status, report = validate_docs(docs, tmp_path)
    assert (status, cni_accepts(docs, tmp_path)) == (1, False)
    assert [d["file"] for d in report["diagnostics"]] == [str(tmp_path / "confdir" / "20-lan.conf")]


# ---- random mutations ---------------------------------------------------------------------------------

_VALUES: list[Any] = [
    None, "", 0, 1, 1.5, 1500.0, True, False, "x", "bridge", "10.174.0.0/24", "10.174.0.5", "::/0", "0.0.0.0/0",
    "2001:db8::/64", [], {}, [[]], ["10.1.1.1"], {"type": "host-local"}, "/abs", "rel", "0a:58:0a:f4:00:02",
    "01:00:5e:00:00:01", "1.0.0", "0.2.0", "9.9.9", [{"dst": "0.0.0.0/0"}], [[{"subnet": "10.9.0.0/24"}]],
    "host-local", "macvlan", "Name", "a/b", "net1", "a@b", [{"name": "x"}], ["10.0.0.1", "10.0.0.2"],
]  # fmt: skip
_KEYS = [
    "cniVersion", "name", "type", "master", "mode", "mtu", "mac", "linkInContainer", "ipam", "dns", "runtimeConfig",
    "args", "capabilities", "plugins", "subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "dataDir",
    "dst", "gw", "ips", "ipRanges", "cni", "nameservers", "MTU", "IPAM", "Mode", "interface", "default-route",
    "cni-args", "namespace", "clusterNetwork", "delegates", "defaultNetworks", "cniDir", "logToStderr",
]  # fmt: skip
# What only EXCLUDED explains (validate refuses, the parsers cannot see it).
_BEYOND_THE_PARSERS = ("invalid MTU -", "is outside every range of", "is a gateway of")


def _mutate(rnd: Any, value: Any) -> Any:
    import copy

    if isinstance(value, dict) and value and rnd.random() < 0.5:
        key = rnd.choice(list(value))
        value[key] = _mutate(rnd, value[key]) if rnd.random() < 0.5 else copy.deepcopy(rnd.choice(_VALUES))
        return value
    if isinstance(value, dict):
        value[rnd.choice(_KEYS)] = copy.deepcopy(rnd.choice(_VALUES))
        return value
    if isinstance(value, list) and value and rnd.random() < 0.6:
        index = rnd.randrange(len(value))
        value[index] = _mutate(rnd, value[index])
        return value
    if isinstance(value, list):
        value.append(copy.deepcopy(rnd.choice(_VALUES)))
        return value
    return copy.deepcopy(rnd.choice(_VALUES))


def _random_docs(rnd: Any) -> list[Any]:
    kind = rnd.choice(["nad", "nad", "conflist", "meta", "pod", "pair"])
    rounds = rnd.randint(1, 3)
    if kind in ("nad", "conflist"):
        conf: Any = rnd.choice(
            [
                macvlan(),
                seed_config(),
                macvlan(
                    ipam=host_local(ranges=[[RANGE], [{"subnet": "2001:db8::/64"}]], routes=[{"dst": "0.0.0.0/0"}])
                ),
            ]
        )
        if kind == "conflist":
            conf = {"cniVersion": "1.0.0", "plugins": [macvlan(cniVersion=None), {"type": "tuning"}]}
        for _ in range(rounds):
            conf = _mutate(rnd, conf)
        return [nad(conf if isinstance(conf, dict) else json.dumps(conf))]
    if kind == "meta":
        conf = rnd.choice([meta(), meta(clusterNetwork=None, delegates=[macvlan(name="d")])])
        for _ in range(rounds):
            conf = _mutate(rnd, conf)
        if not (isinstance(conf, dict) and field(conf, "type") == "multiplane"):
            conf = meta()
        return [json.dumps(conf)]
    chosen: Any = rnd.choice(
        [
            [{"name": "macvlan-conf", "ips": ["10.174.0.201"]}],
            [{"name": "macvlan-conf", "cni-args": {"ips": ["10.174.0.202"]}, "mac": "0a:58:0a:f4:00:02"}],
        ]
    )
    for _ in range(rounds):
        chosen = _mutate(rnd, chosen)
    docs: list[Any] = [pod(networks(json.dumps(chosen)))]
    if kind == "pair":
        docs.insert(0, nad(macvlan(capabilities=rnd.choice([None, {"ips": True}, {"mac": True}]))))
    return docs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mutations_agree(seed: int, tmp_path: Path) -> None:
    """Mutated NADs, conflists, multiplane configs and selections: validate and the CNI path decide alike."""
    import random

    rnd = random.Random(seed)
    compared = 0
    for _ in range(80):
        docs = _random_docs(rnd)
        if _needs_bridge(docs) and not _bridge_oracle():
            continue
        status, report = validate_docs(docs, tmp_path)
        errors = [d["message"] for d in report["diagnostics"] if d["severity"] == "error"]
        if status == 1 and all(any(m in e for m in _BEYOND_THE_PARSERS) for e in errors):
            continue  # only EXCLUDED-kind checks refused it
        assert (status == 0) == cni_accepts(docs, tmp_path), (json.dumps(docs), errors)
        compared += 1
    assert compared >= 60


# ---- the seed and its warning ---------------------------------------------------------------------------


def test_seed_nad_warns_about_its_second_default_route() -> None:
    """The seed NAD (cni/nads/macvlan.yaml) is valid, with one warning: its IPAM route 0.0.0.0/0."""
    status, report = run_main([str(SEED_NAD), "--json", "--no-node-addresses"])
    assert status == 0
    assert report["valid"] is True
    assert [(d["severity"], d["path"], d["line"]) for d in report["diagnostics"]] == [
        ("warning", "$.spec.config.ipam.routes[0].dst", 6)
    ]
    assert "second default route" in report["diagnostics"][0]["message"]
    assert report["documents"] == [
        {
            "file": str(SEED_NAD),
            "document": 0,
            "line": 1,
            "path": "$",
            "kind": "NetworkAttachmentDefinition",
            "name": "macvlan-conf",
        }
    ]


def test_seed_nad_is_the_one_in_the_scenario() -> None:
    """cni/nads/macvlan.yaml carries the seed scenario's config (macvlan on ens33, legacy host-local, a route without gw)."""
    config = seed_config()
    assert config["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert (config["cniVersion"], config["master"], config["ipam"]["subnet"]) == ("0.3.0", "ens33", "192.168.174.0/24")


# ---- paths, lines and messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docs", "path", "fragment"),
    [
        (
            [nad(macvlan(ipam=host_local(ranges=[[{"subnet": "10.1.0.0/33"}]])))],
            "$.spec.config.ipam.ranges[0][0].subnet",
            "not a CIDR",
        ),
        (
            [nad(macvlan(ipam=host_local(ranges=[[RANGE, {"subnet": "10.2.0.0/24", "rangeEnd": "10.3.0.1"}]])))],
            "$.spec.config.ipam.ranges[0][1].rangeEnd",
            "RangeEnd 10.3.0.1 not in network",
        ),
        ([nad(macvlan(mode="bridged"))], "$.spec.config.mode", 'must be "bridge", "private", "vepa", "passthru" or ""'),
        (
            [nad({"cniVersion": "1.0.0", "Type": "macvlan", "MTU": "9000"})],
            "$.spec.config.MTU",
            "must be an integer, got string",
        ),
        (
            [
                nad(
                    {
                        "cniVersion": "1.0.0",
                        "name": "lan",
                        "plugins": [{"type": "tuning"}, macvlan(mac="01:00:5e:00:00:01")],
                    }
                )
            ],
            "$.spec.config.plugins[1].mac",
            "multicast",
        ),
        (
            [nad({"cniVersion": "7.0.0", "name": "lan", "plugins": [{"type": "tuning"}, {"type": "bandwidth"}]})],
            "$.spec.config.cniVersion",
            "unsupported cniVersion",
        ),
        (
            [nad(macvlan(ipam=host_local(ranges=[[RANGE], [{"subnet": "10.174.0.0/16"}]])))],
            "$.spec.config.ipam.ranges[1]",
            "range set 0 overlaps with 1",
        ),
        ([nad(macvlan(), name="Bad_Name")], "$.metadata.name", "DNS-1123 subdomain"),
        ([nad('{"cniVersion": "1.0.0",\n "type": }')], "$.spec.config", "invalid JSON"),
        (
            [pod(networks([{"name": "a", "ips": ["10.0.0.1", "nope"]}]))],
            "$.metadata.annotations['k8s.v1.cni.cncf.io/networks'][0].ips[1]",
            "not an IP address",
        ),
        (
            [pod(networks("a, Bad/b"))],
            "$.metadata.annotations['k8s.v1.cni.cncf.io/networks'][1]",
            "not a valid DNS-1123 label",
        ),
        (
            [
                pod(
                    networks(
                        [{"name": "a", "default-route": ["10.0.0.1"]}, {"name": "b", "default-route": ["10.0.1.1"]}]
                    )
                )
            ],
            "$.metadata.annotations['k8s.v1.cni.cncf.io/networks']",
            "ECMP",
        ),
        (
            [
                '{"cniVersion": "1.0.0", "name": "m", "type": "multiplane", "delegates": [{"type": "macvlan", "name": "d", "mode": "x"}]}'
            ],
            "$.delegates[0].mode",
            "must be",
        ),
        (
            [{"apiVersion": "v1", "kind": "List", "items": [nad(macvlan(master=5))]}],
            "$.items[0].spec.config.master",
            "must be a string, got number",
        ),
    ],
)
def test_errors_carry_json_paths(docs: list[Any], path: str, fragment: str, tmp_path: Path) -> None:
    """Each error names the JSON path of the offending value, keys spelled as the document spells them."""
    status, report = validate_docs(docs, tmp_path)
    assert status == 1
    errors = [(d["path"], d["message"]) for d in report["diagnostics"] if d["severity"] == "error"]
    assert any(p == path and fragment in m for p, m in errors), errors


def test_lines_inside_a_literal_block_config(tmp_path: Path) -> None:
    """In a `config: |` block, an error's line is the line of the key inside the block."""
    text = (
        "apiVersion: k8s.cni.cncf.io/v1\n"
        "kind: NetworkAttachmentDefinition\n"
        "metadata:\n"
        "  name: lan\n"
        "spec:\n"
        "  config: |\n"
        "    {\n"
        '      "cniVersion": "1.0.0",\n'
        '      "type": "macvlan",\n'
        '      "mode": "bridged",\n'
        '      "ipam": {"type": "host-local", "subnet": "10.0.0.0/8"}\n'
        "    }\n"
    )
    (tmp_path / "lan.yaml").write_text(text)
    status, report = run_main([str(tmp_path / "lan.yaml"), "--json", "--no-node-addresses"])
    assert status == 1
    assert [(d["line"], d["path"]) for d in report["diagnostics"]] == [(10, "$.spec.config.mode")]


def test_human_output_format(tmp_path: Path) -> None:
    """Default output: `file:line: error|warning: $.path: message`, one per line."""
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump(nad(macvlan(mode="x", ipam=host_local(ranges=[[RANGE]], routes=[{"dst": "0.0.0.0/0"}]))))
    )
    status, report = run_main([str(tmp_path / "a.yaml"), "--no-node-addresses"])
    assert status == 1
    lines = report["text"].splitlines()
    assert lines == [
        f'{tmp_path / "a.yaml"}:6: error: $.spec.config.mode: must be "bridge", "private", "vepa", "passthru" or "", got "x"'
    ]


# ---- warnings --------------------------------------------------------------------------------------------


def warnings_of(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["path"], d["message"]) for d in report["diagnostics"] if d["severity"] == "warning"]


def test_node_address_inside_a_pool(tmp_path: Path) -> None:
    """A pool holding this node's address is a warning naming both (`--node-address`)."""
    docs = [nad(macvlan())]
    status, report = validate_docs(docs, tmp_path, "--node-address", "10.174.0.210", "--node-address", "192.0.2.1")
    assert status == 0
    assert warnings_of(report) == [
        (
            "$.spec.config.ipam.ranges[0][0]",
            "the pool 10.174.0.200-10.174.0.216 contains this node's address 10.174.0.210: host-local may give it to "
            "a pod (an address conflict on the LAN); start the pool after it or end it before",
        )
    ]
    status, report = validate_docs(docs, tmp_path, "--node-address", "10.174.0.5")
    assert warnings_of(report) == []


def test_node_gateway_for_macvlan(tmp_path: Path) -> None:
    """A macvlan network whose gateway is the node's own address: the pods' routed traffic cannot reach it."""
    conf = macvlan(ipam=host_local(ranges=[[RANGE]], routes=[{"dst": "10.0.0.0/8"}]))
    status, report = validate_docs([nad(conf)], tmp_path, "--node-address", "10.174.0.1")
    assert status == 0
    assert [p for p, m in warnings_of(report) if "own address" in m] == ["$.spec.config.ipam.ranges[0][0]"]


def test_route_gateway_inside_the_pool(tmp_path: Path) -> None:
    """A route's gw inside the pool that is not a configured gateway may be handed to a pod."""
    conf = macvlan(ipam=host_local(ranges=[[RANGE]], routes=[{"dst": "10.0.0.0/8", "gw": "10.174.0.205"}]))
    status, report = validate_docs([nad(conf)], tmp_path)
    assert status == 0
    assert [p for p, m in warnings_of(report)] == ["$.spec.config.ipam.routes[0].gw"]
    assert "router's address" in warnings_of(report)[0][1]


def test_overlapping_pools_on_the_same_master(tmp_path: Path) -> None:
    """Two NADs on one master with overlapping pools: a warning on each; other masters or one shared network: none."""
    other = {**RANGE, "rangeStart": "10.174.0.210", "rangeEnd": "10.174.0.230"}
    docs = [nad(macvlan()), nad(macvlan(ipam=host_local(ranges=[[other]])), name="lan-b")]
    status, report = validate_docs(docs, tmp_path)
    assert status == 0
    found = warnings_of(report)
    assert [p for p, _ in found] == ["$.spec.config.ipam.ranges[0][0]"] * 2
    assert "network 'lan-b'" in found[0][1] and "network 'macvlan-conf'" in found[1][1]
    elsewhere = [nad(macvlan()), nad(macvlan(master="ens34", ipam=host_local(ranges=[[other]])), name="lan-b")]
    assert warnings_of(validate_docs(elsewhere, tmp_path)[1]) == []
    shared = [nad(macvlan(name="lan")), nad(macvlan(name="lan", ipam=host_local(ranges=[[other]])), name="lan-b")]
    assert warnings_of(validate_docs(shared, tmp_path)[1]) == []


def test_one_ip_without_the_capability(tmp_path: Path) -> None:
    """One requested address and no `ips` capability: fine for host-local (IP=), a warning for other IPAMs."""
    selecting = pod(networks([{"name": "macvlan-conf", "ips": ["10.174.0.201"]}]))
    status, report = validate_docs([nad(macvlan()), selecting], tmp_path)
    assert (status, warnings_of(report)) == (0, [])
    dhcp = nad(macvlan(ipam={"type": "dhcp"}))
    status, report = validate_docs([dhcp, selecting], tmp_path)
    assert status == 0
    assert [p for p, _ in warnings_of(report)] == ["$.metadata.annotations['k8s.v1.cni.cncf.io/networks'][0].ips"]


def test_interface_names_count_default_networks(tmp_path: Path) -> None:
    """With a multiplane config given too, its defaultNetworks take net1…: the first selection is net2."""
    conf = json.dumps(meta(defaultNetworks=["extra"]))
    for value, refused in (("a, b@net1", 1), ("a, b@net2", 1), ("a, b@net3", None)):
        status, report = validate_docs([conf, pod(networks(value))], tmp_path)
        paths = [d["path"] for d in report["diagnostics"]]
        if refused is None:
            assert (status, paths) == (0, []), value
        else:
            assert (status, paths) == (1, [f"$.metadata.annotations['k8s.v1.cni.cncf.io/networks'][{refused}]"]), value


def test_strict_makes_warnings_fail(tmp_path: Path) -> None:
    """`--strict`: the seed NAD's warning is enough to exit 1."""
    assert run_main([str(SEED_NAD), "--no-node-addresses", "--strict"])[0] == 1


@pytest.mark.parametrize(
    ("docs", "path"),
    [
        ([nad({"cniVersion": "1.0.0", "plugins": [macvlan(cniVersion=None), 5]})], "$.spec.config.plugins[1]"),
        ([nad(macvlan(capabilities="ips"))], "$.spec.config.capabilities"),
        ([nad(macvlan(ipam=host_local(rangeStart="10.0.0.1", ranges=[[RANGE]])))], "$.spec.config.ipam.rangeStart"),
        ([json.dumps(meta(logLevel="chatty"))], "$.logLevel"),
        ([json.dumps(meta(logOptions={"maxSize": "big"}))], "$.logOptions.maxSize"),
        ([json.dumps(meta(logOptions=[]))], "$.logOptions"),
        ([json.dumps(meta(delegates=[{"type": "bridge"}]))], "$.delegates"),
        ([{**nad(macvlan()), "apiVersion": "k8s.cni.cncf.io/v2"}], "$.apiVersion"),
    ],
)
def test_what_the_cni_path_ignores_is_a_warning(docs: list[Any], path: str, tmp_path: Path) -> None:
    """Values the CNI path accepts but never uses are warnings (the document stays valid)."""
    status, report = validate_docs(docs, tmp_path)
    assert status == 0, report
    assert path in [p for p, _ in warnings_of(report)]


# ---- node addresses from /proc ------------------------------------------------------------------------------

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.2.0/24 2 0 2
        |-- 10.0.2.0
           /24 link UNICAST
        |-- 10.0.2.15
           /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.0.2.15
           /32 host LOCAL
        |-- 192.168.174.10
           /32 host LOCAL
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000a0027fffe4a5c3b 02 40 20 80   enp0s3
20010db8000000000000000000000005 02 40 00 80   enp0s3
"""


def test_node_addresses_from_proc(tmp_path: Path) -> None:
    """The default node addresses: LOCAL /32s of fib_trie and the global IPv6 addresses, no loopback or link-local."""
    assert [str(a) for a in validate.parse_fib_trie(FIB_TRIE)] == ["10.0.2.15", "192.168.174.10"]
    assert [str(a) for a in validate.parse_if_inet6(IF_INET6)] == ["2001:db8::5"]
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "net" / "if_inet6").write_text(IF_INET6)
    assert [str(a) for a in validate.node_addresses(str(tmp_path))] == ["10.0.2.15", "192.168.174.10", "2001:db8::5"]
    assert validate.node_addresses(str(tmp_path / "missing")) == []


# ---- schemas --------------------------------------------------------------------------------------------


def test_schema_files_are_what_the_code_exports() -> None:
    """docs/schemas/ holds exactly the JSON Schemas the models export (`multiplane validate --export-schemas docs/schemas`)."""
    expected = {name: schemas.render_schema(body) for name, body in schemas.json_schemas().items()}
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(expected)
    for name, text in expected.items():
        assert on_disk[name] == text, (
            f"docs/schemas/{name} is stale: run `multiplane validate --export-schemas docs/schemas`"
        )


def test_export_schemas_writes_the_same_files(tmp_path: Path) -> None:
    """`--export-schemas DIR` writes one file per schema, identical to docs/schemas/."""
    status, report = run_main(["--export-schemas", str(tmp_path)])
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    for path in tmp_path.iterdir():
        assert path.read_text() == (SCHEMA_DIR / path.name).read_text()


def test_macvlan_modes_are_the_kernels() -> None:
    """The schema's macvlan modes are the ones the netlink layer knows."""
    from multiplane.netlink.links import MACVLAN_MODES

    assert set(schemas.MACVLAN_MODES) == set(MACVLAN_MODES)


def test_seed_documents_match_the_exported_schemas() -> None:
    """The example documents satisfy their schema's required keys and enums (a smoke test of the export, no validator library)."""
    exported = schemas.json_schemas()
    nad_schema = exported["network-attachment-definition.schema.json"]
    assert set(nad_schema["required"]) <= set(yaml.safe_load(SEED_NAD.read_text()))
    plugin_defs = exported["cni-config.schema.json"]["$defs"]
    assert seed_config()["mode"] in plugin_defs["MacvlanPlugin"]["properties"]["mode"]["anyOf"][0]["enum"]
    assert exported["network-attachment-definition.schema.json"]["$defs"]["NadSpec"]["properties"]["config"][
        "contentSchema"
    ] == {"$ref": "cni-config.schema.json"}


# ---- the entry point ------------------------------------------------------------------------------------


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    return subprocess.run(
        [OURS_MULTIPLANE, "validate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_entry_point_valid_with_warning() -> None:
    """`multiplane validate cni/nads/macvlan.yaml`: exit 0, the warning on stdout, a summary on stderr."""
    proc = cli(str(SEED_NAD), "--no-node-addresses")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{SEED_NAD}:6: warning: $.spec.config.ipam.routes[0].dst: a default route")
    assert "1 checked, 0 error(s), 1 warning(s)" in proc.stderr


def test_entry_point_errors_from_stdin() -> None:
    """JSON on stdin (`-`), `--json`: exit 1 and the errors with their paths."""
    proc = cli("-", "--json", "--no-node-addresses", stdin=json.dumps({**macvlan(mode="x"), "name": "lan"}))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    assert [(d["file"], d["path"]) for d in report["diagnostics"]] == [("<stdin>", "$.mode")]


def test_entry_point_yaml_stream_on_stdin() -> None:
    """Several YAML documents on stdin: a NAD and the pods selecting it."""
    text = SEED_NAD.read_text() + "---\n" + (REPO / "cni" / "pods" / "default" / "web-1.yaml").read_text()
    proc = cli("-", "--json", "--no-node-addresses", stdin=text)
    assert proc.returncode == 0, proc.stdout
    assert [d["kind"] for d in json.loads(proc.stdout)["documents"]] == ["NetworkAttachmentDefinition", "Pod"]


def test_entry_point_bare_annotation() -> None:
    """`--annotation VALUE` checks a bare networks annotation value."""
    assert cli("--annotation", "macvlan-conf@net1, other/lan").returncode == 0
    proc = cli("--annotation", '[{"name": "Bad"}]')
    assert proc.returncode == 1
    assert proc.stdout.startswith("<annotation>: error: $[0].name:")
    assert cli("--default-network", "a,b").returncode == 1


@pytest.mark.parametrize(
    "args",
    [[], ["--no-such-flag"], ["/nonexistent/validate.yaml"], ["--node-address", "not-an-ip", "x.yaml"]],
)
def test_entry_point_usage_errors(args: list[str]) -> None:
    """No input, an unknown flag, an unreadable file, a bad --node-address: exit 2, nothing on stdout."""
    proc = cli(*args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr


def test_entry_point_directory() -> None:
    """A directory stands for its YAML/JSON/CNI files: cni/ and its sub-directories as an operator would pass them."""
    proc = cli(
        str(REPO / "cni"),
        str(REPO / "cni" / "nads"),
        str(REPO / "cni" / "pods" / "default"),
        "--json",
        "--no-node-addresses",
    )
    assert proc.returncode == 0, proc.stdout
    kinds = [d["kind"] for d in json.loads(proc.stdout)["documents"]]
    assert kinds == ["multiplane config", "CNI config", "NetworkAttachmentDefinition", "Pod", "Pod"]


def test_entry_point_help() -> None:
    """`multiplane validate --help` prints usage and exits 0."""
    proc = cli("--help")
    assert proc.returncode == 0
    assert "--annotation" in proc.stdout and "--export-schemas" in proc.stdout


def test_unreadable_document_is_an_error_not_usage(tmp_path: Path) -> None:
    """A file that is not YAML or JSON is an error of that file (exit 1), with its line."""
    (tmp_path / "x.yaml").write_text("a: [1, 2\nb: 3\n")
    status, report = run_main([str(tmp_path / "x.yaml"), "--json"])
    assert status == 1
    assert report["diagnostics"][0]["message"].startswith("invalid YAML")
    assert report["diagnostics"][0]["line"] == 2


# ---- the CNI path stays light -------------------------------------------------------------------------------

_PROBE = """
import json, os, sys
from multiplane.cli import main
status = main([{argv0!r}])
os.write(2, ("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n").encode())
sys.exit(status)
"""


@pytest.mark.parametrize(
    ("argv0", "conf", "stage"),
    [
        (
            "multiplane",
            {
                "cniVersion": "1.0.0",
                "name": "m",
                "type": "multiplane",
                "clusterNetwork": "/nonexistent/validate/net.conf",
            },
            "multiplane.plugins.meta.plan",
        ),
        (
            "multiplane-macvlan",
            {"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "mode": "bridge"},
            "multiplane.plugins.macvlan",
        ),
        (
            "multiplane-host-local",
            {"cniVersion": "1.0.0", "name": "n", "type": "x", "ipam": {"type": "host-local"}},
            "multiplane.ipam.config",
        ),
    ],
)
def test_cni_call_imports_no_pydantic(argv0: str, conf: dict[str, Any], stage: str, tmp_path: Path) -> None:
    """A CNI ADD that gets as far as the config readers imports neither pydantic nor multiplane.tools."""
    conf = {**conf, "cniDir": str(tmp_path)} if conf["type"] == "multiplane" else conf
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(
        CNI_COMMAND="ADD",
        CNI_CONTAINERID="validate-imports",
        CNI_NETNS="/nonexistent/validate-imports",
        CNI_IFNAME="eth0",
        CNI_PATH="/nonexistent",
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv0=argv0)],
        input=json.dumps(conf),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    marker = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    assert len(marker) == 1, proc.stderr
    loaded = set(json.loads(marker[0].removeprefix("MODULES ")))
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] in (4, 7)  # failed where it should, not earlier
    assert stage in loaded
    assert sorted(m for m in loaded if m.split(".")[0] == "pydantic" or m.startswith("multiplane.tools")) == []


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level?) for every import in a source file."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def test_only_the_tools_import_pydantic() -> None:
    """pydantic and multiplane.tools are imported only under multiplane/tools/, and by cli.py lazily (inside main)."""
    package = Path(multiplane.__file__).resolve().parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == "tools":
            continue
        for name, at_top in _imports(path):
            heavy = name.split(".")[0] == "pydantic" or name.startswith("multiplane.tools")
            if heavy and (str(rel) != "cli.py" or at_top or name.split(".")[0] == "pydantic"):
                offenders.append(f"{rel}: {name}")
    assert offenders == []


# ---- small pieces -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "$"),
        (("spec", "config", "ipam", "ranges", 0, 0, "subnet"), "$.spec.config.ipam.ranges[0][0].subnet"),
        (
            ("metadata", "annotations", "k8s.v1.cni.cncf.io/networks", 1),
            "$.metadata.annotations['k8s.v1.cni.cncf.io/networks'][1]",
        ),
        (("cni-args",), "$['cni-args']"),
    ],
)
def test_render_path(loc: tuple[Any, ...], path: str) -> None:
    """Paths are JSONPath: dots for plain keys, brackets for indexes and other keys."""
    assert validate.render_path(loc) == path


def test_spell_follows_gos_key_rule() -> None:
    """A path is spelled as the document spells the key Go would read (the last case-insensitive match)."""
    doc = {"ipam": {"Ranges": [[{"SUBNET": "x"}]]}, "IPAM": {"ranges": []}}
    assert validate.spell(("ipam", "ranges", 0), doc) == ("IPAM", "ranges", 0)
    assert validate.spell(("mtu",), {"MTU": 1}) == ("MTU",)
    assert validate.spell(("missing", "x"), {}) == ("missing", "x")


def test_load_loader_reads_load_file_like_the_cni_path(tmp_path: Path) -> None:
    """A conflist file: what load_file reads is what validate checks (same plugins, same name)."""
    path = REPO / "cni" / "10-macvlan-multiplane-ipam.conflist"
    net = load_file(str(path))
    status, report = run_main([str(path), "--json", "--no-node-addresses"])
    assert status == 0
    assert report["documents"][0]["name"] == net.name == "macvlan-lan"


def test_a_yaml_key_that_is_not_a_string_is_an_error(tmp_path: Path) -> None:
    """YAML allows `1: a`; no CNI or Kubernetes document does: an error at its path, not a crash."""
    path = tmp_path / "mp-odd.yaml"
    path.write_text("cniVersion: 1.0.0\nname: mp-y\ntype: bridge\nipam:\n  1: a\n")
    assert validate.main(["--no-node-addresses", "--json", str(path)]) == 1
