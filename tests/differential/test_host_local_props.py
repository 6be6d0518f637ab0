"""Property test: random ADD/DEL/CHECK sequences run in lockstep on the reference host-local and ours.

Each example gets two fresh dataDirs (one per binary). After every step `Pair.step` asserts equal
exit status, equal normalised result or equal error msg/details/code, equal on-disk snapshot, and
our file modes (0600, lock 0750). Container ids come from a tiny alphabet and ifnames from
{eth0, net1}, and the pools are small, so duplicates, exhaustion, wrap-around of the round-robin
cursor and DEL of unknown attachments all happen often.

Two pools, chosen so that no step can reach a deliberate difference:
* one IPv4 range set (.2-.4 of a /29), with CNI_ARGS `IP=` requests (in pool, gateway, outside
  the range, outside the subnet):
  with a single set a failed ADD never has an earlier reservation of that attachment to release,
  so deliberate difference (b) cannot show; one requested IP at a time keeps (d) out;
* dual stack, IPv4 /29 + IPv6 /126 (two addresses), without requests: the IPv6 set runs out
  first, so "set 0 succeeded, set 1 failed" rollbacks are exercised.
CHECK carries the attachment's latest ADD result as prevResult when the versions match, as a
runtime would, so it is always current and our stricter prevResult CHECK agrees with the reference;
every file is written by a plugin, so "reads only address-named files" cannot show either.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.differential.conftest import Pair, hl

CIDS = ("a", "b", "c")
IFNAMES = ("eth0", "net1")
COMMANDS = ("ADD", "ADD", "ADD", "ADD", "DEL", "DEL", "CHECK")
VERSIONS = ("1.0.0", "1.0.0", "1.0.0", "0.4.0", "0.4.0", "0.3.1", "0.2.0")

SINGLE = {"ranges": [[{"subnet": "10.3.0.0/29", "rangeEnd": "10.3.0.4"}]]}  # pool .2-.4, gateway .1
REQUESTS = (None, None, None, None, None, "10.3.0.1", "10.3.0.3", "10.3.0.4", "10.3.0.5", "10.9.9.9")
DUAL = {"ranges": [[{"subnet": "10.3.1.0/29"}], [{"subnet": "fd00:3::/126"}]]}

PROPS = settings(
    max_examples=35,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

steps_single = st.lists(
    st.tuples(
        st.sampled_from(COMMANDS),
        st.sampled_from(CIDS),
        st.sampled_from(IFNAMES),
        st.sampled_from(REQUESTS),
        st.sampled_from(VERSIONS),
    ),
    min_size=2,
    max_size=18,
)
steps_dual = st.lists(
    st.tuples(
        st.sampled_from(COMMANDS),
        st.sampled_from(CIDS),
        st.sampled_from(IFNAMES),
        st.just(None),
        st.sampled_from(VERSIONS),
    ),
    min_size=2,
    max_size=18,
)


def _lockstep(base: str, reference: str, ipam: dict[str, Any], steps: list[tuple[Any, ...]]) -> None:
    pair = Pair(base, reference)
    prev: dict[tuple[str, str], dict[str, Any]] = {}
    for command, cid, ifname, request, version in steps:
        conf = hl(ipam, version=version)
        if command == "CHECK" and (cid, ifname) in prev and prev[(cid, ifname)]["cniVersion"] == version:
            conf["prevResult"] = prev[(cid, ifname)]
        out = pair.step(command, conf, container_id=cid, ifname=ifname, args=f"IP={request}" if request else None)
        ref = out["ref"]
        # coverage report for --hypothesis-show-statistics: which outcomes the examples reached
        event(f"{command} ok" if ref.ok else f"{command} error: {ref.error()['msg'].split(': ', 1)[-1][:45]}")
        if command == "ADD" and ref.ok:
            prev[(cid, ifname)] = json.loads(ref.stdout)
        elif command == "DEL" and ref.ok:
            prev.pop((cid, ifname), None)


@pytest.fixture
def mkbase(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return lambda: str(tmp_path_factory.mktemp("mp-props"))


@PROPS
@given(steps=steps_single)
def test_lockstep_single_stack_with_requests(
    mkbase: Any, reference_host_local: str, steps: list[tuple[Any, ...]]
) -> None:
    _lockstep(mkbase(), reference_host_local, SINGLE, steps)


@PROPS
@given(steps=steps_dual)
def test_lockstep_dual_stack(mkbase: Any, reference_host_local: str, steps: list[tuple[Any, ...]]) -> None:
    _lockstep(mkbase(), reference_host_local, DUAL, steps)
