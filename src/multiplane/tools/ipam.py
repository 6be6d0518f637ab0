"""`multiplane ipam show|reconcile`: cluster-wide IPAM's store for operators (docs/cluster-ipam.md).

Both read a configuration file that holds one or more `multiplane-cluster-ipam` IPAM sections:
a network config or conflist (JSON), a bare IPAM section, or NetworkAttachmentDefinition
manifests (YAML or JSON; their `spec.config` is searched). Every section found is read with
the plugin's own parser, so the pools and the store are exactly those the plugin uses.

* `show [RANGE]`: per pool, the claimed blocks and their nodes, the single claims and their
  holders (node, pod, container, interface), and free counts (block slots nobody claimed,
  usable addresses outside every claim). Addresses inside a block are the owner node's own
  business (its `<dataDir>/state.json`); the store does not know them.
* `reconcile`: ipam/cluster/reconcile.py, with the Kubernetes API of `--kubeconfig`, else the
  section's `kubernetes.kubeconfig`, else in-cluster.
"""

from __future__ import annotations

import argparse
import json
import sys

from multiplane.errors import CniError, InvalidConfig
from multiplane.ipam.cluster.blocks import Range, ip_str, parse_block
from multiplane.ipam.cluster.config import TYPE, find_sections, load
from multiplane.plugins.cluster_ipam import open_stores

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from multiplane.ipam.cluster.config import ClusterIpamConf, PoolConf
    from multiplane.ipam.cluster.store import Store

__all__ = ["main", "show"]

_EXACT_SLOTS = 65536  # count block slots one by one (skipping those without a usable address) up to this many


def _documents(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise InvalidConfig(f"ipam: cannot read {path}: {exc.strerror}") from exc
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"ipam: {path} is neither JSON nor YAML: {exc}") from exc


def load_confs(path: str) -> list[ClusterIpamConf]:
    sections = [s for doc in _documents(path) for s in find_sections(doc)]
    if not sections:
        raise InvalidConfig(f"ipam: {path} holds no IPAM section of type {TYPE}")
    return [load({"ipam": s}, "ipam", "1.1.0") for s in sections]


# ---- show ----------------------------------------------------------------------------------------


def _usable_in(pool: PoolConf, block: str) -> int:
    """Usable addresses of the pool inside `block` (counted by runs, so a wide IPv6 block costs no more)."""
    version, network, prefix = parse_block(block)
    rng = pool.range
    first, last = max(rng.first, network), min(rng.last, network | ((1 << (rng.bits - prefix)) - 1))
    if first > last:
        return 0
    return Range(version, rng.network, rng.prefix, first, last, rng.excludes, rng.gateway).size()


def _slots(pool: PoolConf) -> int:
    from multiplane.ipam.cluster.blocks import blocks

    rng, host = pool.range, pool.range.bits - pool.block_prefix
    count = (rng.last >> host) - (rng.first >> host) + 1
    if count > _EXACT_SLOTS:
        return count
    return sum(1 for _ in blocks(rng, pool.block_prefix))


def show(stores: list[tuple[Store, list[PoolConf]]]) -> dict[str, Any]:
    """The store's view of every pool, as `show --json` prints it."""
    out: list[dict[str, Any]] = []
    for store, pools in stores:
        for pool in pools:
            held_blocks = store.blocks(pool.name)
            held_ips = store.ips(pool.name)
            in_blocks = sum(_usable_in(pool, b) for b in held_blocks)
            usable = pool.range.size()
            rng = pool.range
            singles = [ip for ip in held_ips if not any(_inside(ip, b) for b in held_blocks)]
            slots = _slots(pool)
            out.append(
                {
                    "pool": pool.name,
                    "range": f"{rng.subnet_str()} ({ip_str(rng.version, rng.first)}-{ip_str(rng.version, rng.last)})",
                    "blockPrefix": pool.block_prefix,
                    "blocks": [{"block": b, **o} for b, o in sorted(held_blocks.items(), key=lambda kv: _order(kv[0]))],
                    "addresses": [{"ip": ip, **h} for ip, h in sorted(held_ips.items(), key=lambda kv: _order(kv[0]))],
                    "free": {
                        "blocks": max(0, slots - len(held_blocks)),
                        "addresses": max(0, usable - in_blocks - len(singles)),
                    },
                    "total": {"blocks": slots, "addresses": usable},
                }
            )
    return {"pools": out}


def _order(key: str) -> tuple[int, int]:
    version, network, _ = parse_block(key if "/" in key else f"{key}/{32 if ':' not in key else 128}")
    return version, network


def _inside(ip: str, block: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(block)


def human(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for pool in doc["pools"]:
        free, total = pool["free"], pool["total"]
        lines.append(f"pool {pool['pool']}  range {pool['range']}  blocks /{pool['blockPrefix']}")
        lines.append(
            f"  free: {free['blocks']} of {total['blocks']} blocks, "
            f"{free['addresses']} of {total['addresses']} addresses outside every claim"
        )
        for b in pool["blocks"]:
            lines.append(f"  block   {b['block']:<22} node {b.get('node', '')}")
        for a in pool["addresses"]:
            lines.append(
                f"  address {a['ip']:<22} node {a.get('node', '')}  pod {a.get('pod') or '-'}  "
                f"container {a.get('container', '')}  interface {a.get('ifname', '')}"
            )
    return "\n".join(lines) + "\n"


# ---- the command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multiplane ipam", description="Cluster-wide IPAM's shared store.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_show = sub.add_parser("show", help="who holds which block and address; free counts")
    p_show.add_argument("range", nargs="?", default="", help="one pool (its name or its subnet)")
    p_show.add_argument("--config", required=True, help="a file with multiplane-cluster-ipam IPAM sections")
    p_show.add_argument("--json", action="store_true", help="print JSON")
    _api_flags(p_show, "the Kubernetes store's API")
    p_rec = sub.add_parser("reconcile", help="free the claims of nodes and pods that are gone")
    p_rec.add_argument("--config", required=True, help="a file with multiplane-cluster-ipam IPAM sections")
    p_rec.add_argument("--grace", type=float, default=600.0, help="seconds a holder must be missing (default 600)")
    _api_flags(p_rec, "the API to ask about nodes and pods, and the Kubernetes store's")
    p_rec.add_argument("--state", default="", help="keep sightings here between runs (else: look, wait, look)")
    p_rec.add_argument("--dry-run", action="store_true", help="say what would be freed; change nothing")
    p_rec.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _api_flags(parser: argparse.ArgumentParser, what: str) -> None:
    api = parser.add_mutually_exclusive_group()
    api.add_argument("--kubeconfig", default="", help=f"{what} (default: the sections' kubernetes.kubeconfig)")
    api.add_argument(
        "--in-cluster",
        action="store_true",
        help=f"{what}: this pod's service account, whatever kubeconfig the sections name (NADs copied as they are)",
    )


def _api_override(args: argparse.Namespace, confs: list[ClusterIpamConf]) -> None:
    """--kubeconfig / --in-cluster replace the Kubernetes store's credentials of every section (etcd ones keep theirs).

    A NAD names the kubeconfig path of a node (/etc/cni/net.d/...), which a CronJob's pod does
    not have; with these flags the operator's file or the pod's service account is used instead.
    """
    if not (args.kubeconfig or args.in_cluster):
        return
    from multiplane.k8s.client import in_cluster_config

    if args.in_cluster and in_cluster_config() is None:
        raise InvalidConfig("ipam: --in-cluster, but KUBERNETES_SERVICE_HOST/PORT are not set (not in a pod)")
    for conf in confs:
        if conf.etcd is None:
            conf.kubeconfig = args.kubeconfig  # "" with --in-cluster: the service account


def _kube_client(flag: str, in_cluster: bool, confs: list[ClusterIpamConf]) -> Any:
    from multiplane.k8s.client import KubeClient, in_cluster_config, load_kubeconfig

    path = flag if (flag or in_cluster) else next((c.kubeconfig for c in confs if c.kubeconfig), "")
    if path:
        return KubeClient(load_kubeconfig(path))
    cfg = in_cluster_config()
    if cfg is None:
        raise InvalidConfig("ipam reconcile: needs the Kubernetes API: --kubeconfig, or run in-cluster")
    return KubeClient(cfg)


def main(argv: list[str]) -> int:
    """`multiplane ipam ...` (argv without "ipam"): 0 done, 1 failed, 2 usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    stores: list[tuple[Store, list[PoolConf]]] = []
    try:
        confs = load_confs(args.config)
        _api_override(args, confs)
        stores = open_stores(confs, getattr(args, "range", ""))
        if args.command == "show":
            doc = show(stores)
            sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else human(doc))
            return 0
        from multiplane.ipam.cluster import reconcile

        if args.grace < 0:
            raise InvalidConfig("ipam reconcile: --grace must not be negative")
        lookup = reconcile.Lookup(_kube_client(args.kubeconfig, args.in_cluster, confs))
        try:
            actions = reconcile.run(
                [(s, [p.name for p in pools]) for s, pools in stores], lookup, args.grace, args.state, args.dry_run
            )
        finally:
            lookup.client.close()
        if args.json:
            sys.stdout.write(json.dumps({"actions": [a.to_json() for a in actions]}, indent=2) + "\n")
        else:
            sys.stdout.write("".join(f"{a}\n" for a in actions) or "nothing to free\n")
        return 0
    except CniError as exc:
        sys.stderr.write(f"multiplane ipam: {exc.msg}\n")
        return 1
    except OSError as exc:  # the state file
        sys.stderr.write(f"multiplane ipam: {exc}\n")
        return 1
    finally:
        for store, _ in stores:
            store.close()
