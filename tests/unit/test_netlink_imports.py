"""pyroute2 is loaded for its message classes only: not its package __init__, IPRoute, NDB or asyncio."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    prog = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_message_classes_load_without_the_heavy_package() -> None:
    """pyroute2_messages() gives working message classes while IPRoute, NDB, IPDB and asyncio stay unloaded."""
    loaded = _modules_after(
        "from multiplane.netlink import pyroute2_messages\n"
        "m = pyroute2_messages()\n"
        "msg = m.ifinfmsg(); msg['attrs'] = [('IFLA_IFNAME', 'mp-x')]; msg.encode()\n"
        "assert msg.data[16:] and b'mp-x' in msg.data\n"
    )
    assert "pyroute2.netlink.rtnl.ifinfmsg" in loaded
    heavy = {"pyroute2.iproute", "pyroute2.ndb", "pyroute2.ipdb", "pyroute2.conntrack", "asyncio", "pydantic"}
    assert sorted(heavy & loaded) == []


def test_real_package_is_reused_when_already_imported() -> None:
    """If a process already imported pyroute2 normally, the loader uses that package instead of a bare one."""
    loaded = _modules_after(
        "import pyroute2\n"
        "from multiplane.netlink import pyroute2_messages\n"
        "pyroute2_messages()\n"
        "assert hasattr(sys.modules['pyroute2'], 'IPRoute')\n".replace("assert hasattr", "import sys\nassert hasattr")
    )
    assert "pyroute2.iproute" in loaded


def test_plugin_modules_import_without_pyroute2() -> None:
    """Importing the macvlan plugin (as VERSION or a config error would) does not load pyroute2 at all."""
    loaded = _modules_after("import multiplane.plugins.macvlan, multiplane.plugins.macvlan_check")
    assert not any(m == "pyroute2" or m.startswith("pyroute2.") for m in loaded)
    assert "json" in loaded and "multiplane.netlink.rtnl" in loaded


def test_local_mode_meta_plugin_does_not_load_the_http_client() -> None:
    """Without a kubeconfig or cluster, the meta-plugin's modules (and their NotFound) leave http.client and ssl unloaded."""
    loaded = _modules_after(
        "import multiplane.plugins.meta.plugin, multiplane.plugins.meta.plan, multiplane.plugins.meta.networks\n"
        "from multiplane.k8s.errors import NotFound\n"
    )
    assert "multiplane.plugins.meta.plugin" in loaded
    assert sorted({"ssl", "http.client", "multiplane.k8s.client"} & loaded) == []
