"""Shared machinery for the host-local differential tests: one scenario, two binaries, two dataDirs.

`Pair` runs the same CNI invocation against Debian's reference host-local (1.1.1) and against
`multiplane-host-local`, each with its own fresh dataDir, and compares what a runtime sees:

* exit status;
* on success: the result as JSON (`normalise` drops the reference's always-present empty `dns`);
* on failure: `msg` and `details` exactly, and the code: equal, unless the scenario is listed in
  OUR_CODE (deliberate difference (e): the reference wraps every plugin error in 999, we report
  config errors as 7 and CNI_ARGS errors as 4);
* the on-disk state: file names and bytes (`snapshot`), directory modes equal, and our file modes
  0600 with the lock 0750 (deliberate: reference 1.1.1 writes reservations 0644).
"""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cni import OURS_HOST_LOCAL, Invocation, normalise, run, snapshot

NET = "testnet"
DATA = "@DATADIR@"  # replaced by each side's own dataDir
SIDES = ("ref", "ours")

# Deliberate difference (e): scenario → the code we report. The reference reports 999 for all of them.
OUR_CODE: dict[str, int] = {
    # CNI_ARGS errors → 4 (InvalidEnvironment)
    "args: unknown key": 4,
    "args: invalid pair": 4,
    "args: bad value": 4,
    "args: bad bool": 4,
    # config errors → 7 (InvalidConfig)
    "config: no ipam": 7,
    "config: no ranges": 7,
    "config: invalid range set": 7,
    "config: range sets overlap": 7,
    "config: too many sets for 0.x": 7,
    "config: bad CIDR": 7,
    "config: bad IP": 7,
    "config: bad requested IP": 7,
    "config: JSON type": 7,
    "config: resolvConf missing": 7,
}


def hl(
    ipam: dict[str, Any] | None = None,
    version: str | None = "1.0.0",
    name: str = NET,
    **top: Any,
) -> dict[str, Any]:
    """A host-local request config; `ipam=None` leaves the key out. dataDir is each side's own."""
    conf: dict[str, Any] = {"name": name, "type": "host-local"}
    if version is not None:
        conf["cniVersion"] = version
    if ipam is not None:
        conf["ipam"] = {"type": "host-local", "dataDir": DATA, **ipam}
    conf.update(top)
    return conf


def ranges(*sets: list[str] | str) -> dict[str, Any]:
    """`ranges` from subnets: ranges(["10.1.2.0/24", "10.2.2.0/24"], "2001:db8:1::/64")."""
    out = []
    for rset in sets:
        subnets = [rset] if isinstance(rset, str) else rset
        out.append([{"subnet": s} for s in subnets])
    return {"ranges": out}


def _substitute(value: Any, data_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace(DATA, data_dir)
    if isinstance(value, dict):
        return {k: _substitute(v, data_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, data_dir) for v in value]
    return value


def modes(directory: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, directory)] = stat.S_IMODE(os.lstat(full).st_mode)
    return out


class Pair:
    """The same scenario against the reference and against ours, in lockstep."""

    def __init__(self, base: str, reference: str) -> None:
        self.binaries = {"ref": reference, "ours": OURS_HOST_LOCAL}
        self.dirs = {side: os.path.join(base, f"mp-{side}") for side in SIDES}
        for d in self.dirs.values():
            os.makedirs(d)
        self.log: list[str] = []

    def conf_for(self, side: str, conf: Any) -> Any:
        if isinstance(conf, (dict, list)):
            return _substitute(copy.deepcopy(conf), self.dirs[side])
        return conf

    def raw(self, command: str, conf: Any, **kw: Any) -> dict[str, Invocation]:
        """Run on both sides, without any assertion."""
        self.log.append(f"{command} {kw}")
        return {side: run(self.binaries[side], command, self.conf_for(side, conf), **kw) for side in SIDES}

    def step(self, command: str, conf: Any, *, code_key: str | None = None, **kw: Any) -> dict[str, Invocation]:
        """Run on both sides and assert that a runtime could not tell them apart (see the module doc)."""
        out = self.raw(command, conf, **kw)
        assert_same(out["ref"], out["ours"], code_key, context=" / ".join(self.log))
        self.assert_same_state()
        return out

    # ---- on-disk state -------------------------------------------------------------

    def net_dir(self, side: str, network: str = NET) -> str:
        return os.path.join(self.dirs[side], network)

    def snapshots(self) -> dict[str, dict[str, bytes]]:
        return {side: snapshot(self.dirs[side]) for side in SIDES}

    def assert_same_state(self) -> None:
        snaps = self.snapshots()
        assert snaps["ours"] == snaps["ref"], f"on-disk state differs after {self.log}"
        self.assert_our_modes()

    def assert_our_modes(self) -> None:
        ref_modes, our_modes = modes(self.dirs["ref"]), modes(self.dirs["ours"])
        for rel, mode in our_modes.items():
            full = os.path.join(self.dirs["ours"], rel)
            if os.path.isdir(full):
                assert mode == ref_modes.get(rel), f"directory {rel}: mode {mode:o} vs reference {ref_modes.get(rel)}"
            elif os.path.basename(rel) == "lock":
                assert mode == 0o750, f"{rel}: mode {mode:o}, want 0750"
            else:
                assert mode == 0o600, f"{rel}: mode {mode:o}, want 0600"

    def write(self, rel: str, data: bytes | str) -> None:
        """Put the same file into both dataDirs (ours 0600, so the mode invariant keeps holding)."""
        payload = data.encode() if isinstance(data, str) else data
        for side in SIDES:
            path = os.path.join(self.dirs[side], rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(payload)
            if side == "ours":
                os.chmod(path, 0o600)

    def read(self, side: str, rel: str) -> bytes:
        with open(os.path.join(self.dirs[side], rel), "rb") as fh:
            return fh.read()


def assert_same(ref: Invocation, ours: Invocation, code_key: str | None = None, context: str = "") -> None:
    where = (
        f"\nreference: rc={ref.returncode} {ref.stdout!r}\nours:      rc={ours.returncode} {ours.stdout!r}\n{context}"
    )
    assert ours.returncode == ref.returncode, "exit status differs" + where
    if ref.returncode == 0:
        assert code_key is None, "scenario expected an error" + where
        if ref.stdout.strip():
            assert normalise(json.loads(ours.stdout)) == normalise(json.loads(ref.stdout)), "result differs" + where
        else:
            assert ours.stdout == "", "unexpected stdout" + where
        return
    r, o = ref.error(), ours.error()
    assert o["msg"] == r["msg"], "error msg differs" + where
    assert o.get("details", "") == r.get("details", ""), "error details differ" + where
    if code_key is None:
        assert o["code"] == r["code"], "error code differs" + where
    else:
        assert r["code"] == 999, f"reference code for {code_key!r}" + where
        assert o["code"] == OUR_CODE[code_key], f"our code for {code_key!r}" + where


@pytest.fixture
def pair(tmp_path: Any, reference_host_local: str) -> Iterator[Pair]:
    yield Pair(str(tmp_path), reference_host_local)
