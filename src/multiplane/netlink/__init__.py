"""Kernel networking through rtnetlink: the only package that imports pyroute2.

We use pyroute2 for what it is best at, encoding and decoding rtnetlink messages
(`ifinfmsg`, `ifaddrmsg`, `rtmsg`), and drive a plain synchronous socket ourselves
(`rtnl.Rtnl`). `import pyroute2` costs ~130 ms because the package's `__init__` loads
IPRoute, NDB, IPDB, conntrack and asyncio; the message modules alone cost ~35 ms. A CNI
plugin pays this on every pod, so `pyroute2_messages()` registers a bare package object
for `pyroute2` (the real package directory, without running its `__init__`) and then
imports only the message modules. If the real package was already imported (a test
process, say), it is used as is.
"""

from __future__ import annotations

import importlib.util
import sys
import types

__all__ = ["pyroute2_messages"]


def pyroute2_messages() -> types.SimpleNamespace:
    """The pyroute2 message classes, imported without the package's heavy `__init__`."""
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("pyroute2 is not installed")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["pyroute2"] = package
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return types.SimpleNamespace(ifinfmsg=ifinfmsg, ifaddrmsg=ifaddrmsg, rtmsg=rtmsg)
