"""skel.run: environment checks, stdin decoding, version gates and the one-JSON-on-stdout contract.

Vectors T01–T21 of docs cni-spec.md §9.1, driven in-process with a recording fake plugin,
plus a few of them through the installed `multiplane-host-local` binary.
"""

from __future__ import annotations

import io
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

import multiplane
from multiplane import skel
from multiplane.errors import CniError, NotAvailable, TryAgainLater
from multiplane.spec.result import DNS, Interface, IPConfig, Result, Route
from tests.cni import OURS_HOST_LOCAL
from tests.cni import run as run_binary

# The spec's recommended list (cni-spec.md §2.5), written out rather than imported.
ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

BASE = {
    "CNI_CONTAINERID": "ctr1",
    "CNI_NETNS": "/var/run/netns/t",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def conf(version: str | None = "1.0.0", **extra: Any) -> bytes:
    """A request config with name `testnet`; `version=None` leaves cniVersion out."""
    obj: dict[str, Any] = {"name": "testnet", "type": "x", **extra}
    if version is not None:
        obj["cniVersion"] = version
    return json.dumps(obj).encode()


def sample_result() -> Result:
    """A dual-stack result using 1.1-only fields, so every conversion has something to drop."""
    return Result(
        "1.1.0",
        interfaces=[
            Interface("eth0", mac="0a:58:0a:01:02:03", sandbox="/var/run/netns/t", mtu=1400, pci_id="0000:04:00.5")
        ],
        ips=[
            IPConfig(ipaddress.ip_interface("10.1.2.3/24"), ipaddress.ip_address("10.1.2.1"), interface=0),
            IPConfig(ipaddress.ip_interface("fd00::3/64"), ipaddress.ip_address("fd00::1"), interface=0),
        ],
        routes=[Route(ipaddress.ip_interface("0.0.0.0/0"), priority=100), Route(ipaddress.ip_interface("::/0"))],
        dns=DNS(nameservers=["10.1.2.1"]),
    )


class FakePlugin:
    """Records each handler call; ADD returns `result`; every handler raises `exc` when set."""

    name = "fake"

    def __init__(self, result: Result | None = None, exc: BaseException | None = None) -> None:
        self.result = result if result is not None else sample_result()
        self.exc = exc
        self.calls: list[tuple[str, skel.Request]] = []

    def _record(self, handler: str, req: skel.Request) -> None:
        self.calls.append((handler, req))
        if self.exc is not None:
            raise self.exc

    def add(self, req: skel.Request) -> Result:
        self._record("add", req)
        return self.result

    def check(self, req: skel.Request) -> None:
        self._record("check", req)

    def delete(self, req: skel.Request) -> None:
        self._record("delete", req)

    def gc(self, req: skel.Request) -> None:
        self._record("gc", req)

    def status(self, req: skel.Request) -> None:
        self._record("status", req)

    @property
    def handlers(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    plugin: FakePlugin = field(repr=False)

    def document(self) -> Any:
        """The single JSON document on stdout; fails if there is anything else."""
        text = self.stdout.strip()
        obj, end = json.JSONDecoder().raw_decode(text)
        assert text[end:].strip() == "", f"more than one JSON document on stdout: {self.stdout!r}"
        return obj

    def error(self) -> dict[str, Any]:
        """The CNI error object, checked for shape and for exit status 1."""
        assert self.status == 1, (self.status, self.stdout)
        obj = self.document()
        assert set(obj) == {"cniVersion", "code", "msg", "details"}, obj
        return obj


def invoke(command: str | None, stdin: bytes = b"", plugin: FakePlugin | None = None, **env: str | None) -> Outcome:
    """Run skel in-process with BASE plus `env`; a None value removes that variable."""
    full: dict[str, str] = dict(BASE)
    if command is not None:
        full["CNI_COMMAND"] = command
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    plugin = plugin or FakePlugin()
    out, err = io.StringIO(), io.StringIO()
    status = skel.run(plugin, full, stdin, out, err)
    return Outcome(status, out.getvalue(), err.getvalue(), plugin)


def invoke_env(env: dict[str, str], stdin: bytes = b"", plugin: FakePlugin | None = None) -> Outcome:
    """Run skel in-process with exactly `env`."""
    plugin = plugin or FakePlugin()
    out, err = io.StringIO(), io.StringIO()
    status = skel.run(plugin, env, stdin, out, err)
    return Outcome(status, out.getvalue(), err.getvalue(), plugin)


# ---- VERSION (T01, T02) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "stdin", [b"", b"garbage", b"{", b"[]", b'{"cniVersion": 4}', b'{"cniVersion": ""}', b"\xff\xfe"]
)
def test_version_answers_whatever_stdin_holds(stdin: bytes) -> None:
    """T01: VERSION with empty or unusable stdin exits 0 with a non-empty cniVersion and all seven versions."""
    outcome = invoke_env({"CNI_COMMAND": "VERSION"}, stdin)
    assert outcome.status == 0
    reply = outcome.document()
    assert set(reply) == {"cniVersion", "supportedVersions"}
    assert reply["cniVersion"] in ALL_VERSIONS
    assert reply["supportedVersions"] == ALL_VERSIONS
    assert outcome.plugin.calls == []


@pytest.mark.parametrize("requested", ALL_VERSIONS)
def test_version_echoes_requested_version(requested: str) -> None:
    """T02: VERSION echoes the cniVersion the caller sent."""
    outcome = invoke_env({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": requested}).encode())
    assert outcome.status == 0
    assert outcome.document() == {"cniVersion": requested, "supportedVersions": ALL_VERSIONS}


def test_version_ignores_invalid_other_variables() -> None:
    """VERSION validates no other CNI_* variable (libcni sends `dummy` values)."""
    outcome = invoke("VERSION", b'{"cniVersion":"0.4.0"}', CNI_CONTAINERID="bad%%id", CNI_IFNAME="a/b:c d", CNI_PATH="")
    assert outcome.status == 0
    assert outcome.document()["cniVersion"] == "0.4.0"


def test_version_survives_deeply_nested_stdin() -> None:
    """VERSION answers even when stdin is JSON nested too deeply for Python's decoder."""
    outcome = invoke_env({"CNI_COMMAND": "VERSION"}, b"[" * 100_000)
    assert outcome.status == 0
    assert outcome.document()["supportedVersions"] == ALL_VERSIONS


# ---- about text and dispatch (T03–T05) ---------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"CNI_COMMAND": ""}], ids=["no-env", "empty-command"])
def test_no_command_prints_about_text(env: dict[str, str]) -> None:
    """T03: without CNI_COMMAND the about text goes to stderr, stdout stays empty and the exit status is 0."""
    outcome = invoke_env(env, conf())
    assert outcome.status == 0
    assert outcome.stdout == ""
    first, second = outcome.stderr.splitlines()[:2]
    assert first == f"CNI fake plugin {multiplane.__version__}"
    assert second == "CNI protocol versions supported: " + ", ".join(ALL_VERSIONS)
    assert outcome.plugin.calls == []


def test_unknown_command_is_code_4() -> None:
    """T04: an unknown CNI_COMMAND fails with code 4 naming the command."""
    err = invoke("NOPE", conf()).error()
    assert (err["code"], err["msg"]) == (4, "unknown CNI_COMMAND: NOPE")


@pytest.mark.parametrize(("stdin", "code"), [(b"", 6), (b'{"cniVersion":"0.4.0","name":"n"}', 4)])
def test_lower_case_version_is_not_version(stdin: bytes, code: int) -> None:
    """T05: `version` in lower case is an unknown command, never VERSION."""
    outcome = invoke_env({"CNI_COMMAND": "version"}, stdin)
    err = outcome.error()
    assert err["code"] == code
    assert "supportedVersions" not in err
    assert outcome.plugin.calls == []


# ---- environment (T06–T08) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "present", "missing"),
    [
        ("ADD", {"CNI_CONTAINERID": "ctr1"}, "CNI_NETNS,CNI_IFNAME,CNI_PATH"),
        ("ADD", {}, "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH"),
        ("CHECK", {"CNI_IFNAME": "eth0"}, "CNI_CONTAINERID,CNI_NETNS,CNI_PATH"),
        ("DEL", {"CNI_NETNS": "/x"}, "CNI_CONTAINERID,CNI_IFNAME,CNI_PATH"),
        ("DEL", {"CNI_CONTAINERID": "ctr1", "CNI_PATH": "/opt/cni/bin"}, "CNI_IFNAME"),
        ("GC", {"CNI_CONTAINERID": "ctr1"}, "CNI_PATH"),
        ("STATUS", {}, "CNI_PATH"),
    ],
)
def test_missing_variables_listed_in_order(command: str, present: dict[str, str], missing: str) -> None:
    """T06/T19: missing required variables give code 4 with every name, in skel's order."""
    outcome = invoke_env({"CNI_COMMAND": command, **present}, conf("1.1.0"))
    err = outcome.error()
    assert (err["code"], err["msg"]) == (4, f"required env variables [{missing}] missing")
    assert outcome.plugin.calls == []


def test_empty_variable_counts_as_missing() -> None:
    """A variable set to the empty string is missing, as libcni sends "" for unused ones."""
    err = invoke("ADD", conf(), CNI_NETNS="", CNI_PATH="").error()
    assert err["msg"] == "required env variables [CNI_NETNS,CNI_PATH] missing"


@pytest.mark.parametrize("netns", [None, ""], ids=["unset", "empty"])
def test_del_without_netns_runs_handler(netns: str | None) -> None:
    """DEL needs no CNI_NETNS: the handler runs and sees an empty netns."""
    outcome = invoke("DEL", conf(), CNI_NETNS=netns)
    assert (outcome.status, outcome.stdout) == (0, "")
    assert outcome.plugin.handlers == ["delete"]
    assert outcome.plugin.calls[0][1].args.netns == ""


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_status_need_only_command_and_path(command: str) -> None:
    """GC and STATUS run with just CNI_COMMAND and CNI_PATH set."""
    outcome = invoke_env({"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}, conf("1.1.0"))
    assert (outcome.status, outcome.stdout) == (0, "")
    assert outcome.plugin.handlers == [command.lower()]


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_status_accept_empty_ids(command: str) -> None:
    """T20: the empty CONTAINERID/NETNS/IFNAME/ARGS that libcni sends do not trip validation."""
    stdin = conf("1.1.0", **{"cni.dev/valid-attachments": []})
    outcome = invoke(command, stdin, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="", CNI_ARGS="")
    assert (outcome.status, outcome.stdout) == (0, "")
    assert outcome.plugin.handlers == [command.lower()]


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_status_do_not_validate_ids(command: str) -> None:
    """GC and STATUS do not validate a container id or ifname they do not use."""
    outcome = invoke(command, conf("1.1.0"), CNI_CONTAINERID="bad%%id", CNI_IFNAME="a/b")
    assert outcome.status == 0
    assert outcome.plugin.handlers == [command.lower()]


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
@pytest.mark.parametrize("container_id", ["ctr%%1", "-ctr", ".ctr", "_ctr", "ctr 1", "ctr/1", "ctr1\n", "ctré"])
def test_bad_container_id_is_code_4(command: str, container_id: str) -> None:
    """T07: a container id outside the spec's regex gives code 4 with the value as details."""
    outcome = invoke(command, conf(), CNI_CONTAINERID=container_id)
    err = outcome.error()
    assert (err["code"], err["msg"], err["details"]) == (4, "invalid characters in containerID", container_id)
    assert outcome.plugin.calls == []


@pytest.mark.parametrize(
    ("ifname", "msg", "details"),
    [
        ("1234567890123456", "interface name is too long", "interface name should be less than 16 characters"),
        ("ééééééééé", "interface name is too long", "interface name should be less than 16 characters"),
        ("eth0:1", "interface name contains / or : or whitespace characters", ""),
        ("a b", "interface name contains / or : or whitespace characters", ""),
        ("a\tb", "interface name contains / or : or whitespace characters", ""),
        ("a/b", "interface name contains / or : or whitespace characters", ""),
        (".", "interface name is . or ..", ""),
        ("..", "interface name is . or ..", ""),
    ],
)
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_bad_ifname_is_code_4(command: str, ifname: str, msg: str, details: str) -> None:
    """T08: every invalid interface name gives code 4 with the reference text."""
    outcome = invoke(command, conf(), CNI_IFNAME=ifname)
    err = outcome.error()
    assert (err["code"], err["msg"], err["details"]) == (4, msg, details)
    assert outcome.plugin.calls == []


def test_empty_ifname_is_missing() -> None:
    """T08: an empty CNI_IFNAME is reported as a missing variable (code 4)."""
    err = invoke("ADD", conf(), CNI_IFNAME="").error()
    assert (err["code"], err["msg"]) == (4, "required env variables [CNI_IFNAME] missing")


def test_valid_edge_names_pass() -> None:
    """A 15-byte ifname and a container id with `_.-` after the first character are accepted."""
    outcome = invoke("ADD", conf(), CNI_IFNAME="123456789012345", CNI_CONTAINERID="a_b.c-d")
    assert outcome.status == 0
    req = outcome.plugin.calls[0][1]
    assert (req.args.ifname, req.args.container_id) == ("123456789012345", "a_b.c-d")


def test_bad_value_reported_before_missing_ones() -> None:
    """A bad value of a present variable is reported at once, ahead of later missing variables."""
    err = invoke("ADD", conf(), CNI_CONTAINERID="ctr%%1", CNI_NETNS=None, CNI_PATH=None).error()
    assert err["msg"] == "invalid characters in containerID"


# ---- stdin and name (T09–T12, T21) -------------------------------------------------------


@pytest.mark.parametrize("stdin", [b'{"cniVersion":', b"", b"   ", b"garbage", b"[1]", b'"x"', b"\xff"])
def test_undecodable_stdin_is_code_6(stdin: bytes) -> None:
    """T09/T10: stdin that is not a JSON object (or is empty) gives code 6."""
    outcome = invoke("ADD", stdin)
    err = outcome.error()
    assert err["code"] == 6
    assert err["msg"].startswith("error unmarshall network config:")
    assert outcome.plugin.calls == []


def test_deeply_nested_stdin_is_an_error_object() -> None:
    """Stdin nested too deeply to decode still yields one CNI error object, not an escaping exception."""
    outcome = invoke("ADD", b"[" * 100_000)
    assert outcome.error()["code"] == 6


@pytest.mark.parametrize("stdin", [b'{"cniVersion":"1.0.0","type":"x"}', b'{"cniVersion":"1.0.0","name":""}'])
def test_missing_name_is_code_7(stdin: bytes) -> None:
    """T11: a config without a network name gives code 7 `missing network name`."""
    err = invoke("ADD", stdin).error()
    assert (err["code"], err["msg"]) == (7, "missing network name")


@pytest.mark.parametrize("name", ["te%%st", "-net", "net work", "net/x", "ünet"])
def test_bad_name_is_code_7(name: str) -> None:
    """T12: a name outside the spec's regex gives code 7 with the name as details."""
    err = invoke("ADD", json.dumps({"cniVersion": "1.0.0", "name": name, "type": "x"}).encode()).error()
    assert (err["code"], err["msg"], err["details"]) == (7, "invalid characters found in network name", name)


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_name_checked_before_version(command: str) -> None:
    """T21: a bad name is reported (7) even when the version would also be refused."""
    err = invoke(command, b'{"cniVersion":"0.1.0","name":"te%%st","type":"x"}').error()
    assert err["code"] == 7


# ---- version gates (T13–T18) -------------------------------------------------------------


SKEL_LIST = '["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'


@pytest.mark.parametrize("command", ["ADD", "DEL"])
@pytest.mark.parametrize("version", ["9.9.9", "1.2.0", "0.5.0", "1.0", "adsf"])
def test_unsupported_version_is_code_1(command: str, version: str) -> None:
    """T13: ADD and DEL with a version not in the list give code 1 with skel's exact details."""
    outcome = invoke(command, conf(version))
    err = outcome.error()
    assert (err["code"], err["msg"]) == (1, "incompatible CNI versions")
    assert err["details"] == f'config is "{version}", plugin supports {SKEL_LIST}'
    assert outcome.plugin.calls == []


@pytest.mark.parametrize("version", ["9.9.9", "1.2.0"])
def test_check_newer_than_plugin_is_code_1(version: str) -> None:
    """CHECK with a version above everything supported gives code 1 `plugin version does not allow CHECK`."""
    outcome = invoke("CHECK", conf(version))
    err = outcome.error()
    assert (err["code"], err["msg"]) == (1, "plugin version does not allow CHECK")
    assert outcome.plugin.calls == []


def test_check_unlisted_version_is_code_1() -> None:
    """CHECK with a parseable, new-enough version that is not listed gives the exact-match code 1."""
    err = invoke("CHECK", conf("1.0")).error()
    assert (err["code"], err["msg"]) == (1, "incompatible CNI versions")
    assert err["details"] == f'config is "1.0", plugin supports {SKEL_LIST}'


def test_missing_version_means_010() -> None:
    """T14: a config without cniVersion is 0.1.0, and ADD answers in the 0.1.0 shape."""
    result = Result(
        "1.1.0",
        ips=[IPConfig(ipaddress.ip_interface("10.1.2.2/29"), ipaddress.ip_address("10.1.2.1"))],
        routes=[Route(ipaddress.ip_interface("0.0.0.0/0"))],
    )
    outcome = invoke("ADD", conf(None), FakePlugin(result))
    assert outcome.status == 0
    assert outcome.plugin.calls[0][1].conf.cni_version == "0.1.0"
    assert outcome.document() == {
        "cniVersion": "0.1.0",
        "ip4": {"ip": "10.1.2.2/29", "gateway": "10.1.2.1", "routes": [{"dst": "0.0.0.0/0"}]},
    }


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", None])
def test_check_needs_040(version: str | None) -> None:
    """T15: CHECK with a config version below 0.4.0 gives code 1."""
    outcome = invoke("CHECK", conf(version))
    err = outcome.error()
    assert (err["code"], err["msg"]) == (1, "config version does not allow CHECK")
    assert outcome.plugin.calls == []


@pytest.mark.parametrize("command", ["CHECK", "GC", "STATUS"])
@pytest.mark.parametrize("version", ["adsf", "1.0.0.0", "v1.1.0", "1.x"])
def test_gated_command_with_garbage_version_is_code_6(command: str, version: str) -> None:
    """T16: CHECK, GC and STATUS with an unparseable version give code 6."""
    outcome = invoke(command, conf(version))
    assert outcome.error()["code"] == 6
    assert outcome.plugin.calls == []


@pytest.mark.parametrize("command", ["GC", "STATUS"])
@pytest.mark.parametrize("version", ["0.1.0", "0.4.0", "1.0.0"])
def test_gc_status_need_110(command: str, version: str) -> None:
    """T17/T18: GC and STATUS with a config version below 1.1.0 give code 1."""
    outcome = invoke(command, conf(version))
    err = outcome.error()
    assert (err["code"], err["msg"]) == (1, f"config version does not allow {command}")
    assert outcome.plugin.calls == []


@pytest.mark.parametrize(
    ("command", "version", "handler"),
    [("ADD", v, "add") for v in ALL_VERSIONS]
    + [("DEL", v, "delete") for v in ALL_VERSIONS]
    + [("CHECK", v, "check") for v in ("0.4.0", "1.0.0", "1.1.0")]
    + [("GC", "1.1.0", "gc"), ("STATUS", "1.1.0", "status")],
)
def test_supported_versions_reach_handler(command: str, version: str, handler: str) -> None:
    """Every command runs its own handler once for each version it allows."""
    outcome = invoke(command, conf(version, ipam={"type": "x"}))
    assert outcome.status == 0
    assert outcome.plugin.handlers == [handler]
    req = outcome.plugin.calls[0][1]
    assert (req.args.command, req.args.container_id, req.args.ifname) == (command, "ctr1", "eth0")
    assert (req.conf.name, req.conf.cni_version, req.conf.get("ipam")) == ("testnet", version, {"type": "x"})


# ---- handler failures and the error object ------------------------------------------------


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_arbitrary_exception_is_code_999(command: str) -> None:
    """A handler raising a plain Python exception yields code 999 on stdout; the traceback goes to stderr only."""
    plugin = FakePlugin(exc=RuntimeError("boom in handler"))
    outcome = invoke(command, conf("1.1.0"), plugin)
    err = outcome.error()
    assert err["code"] == 999
    assert "boom in handler" in err["msg"]
    assert "Traceback" not in outcome.stdout
    assert "Traceback (most recent call last)" in outcome.stderr
    assert "RuntimeError: boom in handler" in outcome.stderr


@pytest.mark.parametrize(("exc", "code"), [(TryAgainLater("lock busy"), 11), (NotAvailable("pool empty"), 50)])
def test_typed_error_keeps_its_code(exc: CniError, code: int) -> None:
    """A CniError from a handler passes through with its own code, msg and details."""
    exc.details = "more"
    err = invoke("STATUS", conf("1.1.0"), FakePlugin(exc=exc)).error()
    assert (err["code"], err["msg"], err["details"]) == (code, exc.msg, "more")


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_error_carries_request_version(version: str) -> None:
    """An error object's cniVersion is the request's version when that version is supported."""
    err = invoke("ADD", conf(version), FakePlugin(exc=CniError("nope"))).error()
    assert err["cniVersion"] == version


def test_error_version_falls_back_when_unreadable() -> None:
    """An error for unreadable stdin carries one of our supported versions."""
    err = invoke("ADD", b"{").error()
    assert err["cniVersion"] in ALL_VERSIONS


# ---- ADD output ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_result_converted_to_config_version(version: str) -> None:
    """ADD prints the handler's result in the config's cniVersion shape (§4)."""
    outcome = invoke("ADD", conf(version))
    assert outcome.status == 0
    doc = outcome.document()
    assert doc["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert set(doc) == {"cniVersion", "ip4", "ip6", "dns"}
        assert doc["ip4"]["ip"] == "10.1.2.3/24"
        assert doc["ip6"]["ip"] == "fd00::3/64"
        return
    assert [ip["address"] for ip in doc["ips"]] == ["10.1.2.3/24", "fd00::3/64"]
    has_version = [("version" in ip) for ip in doc["ips"]]
    assert has_version == [version in ("0.3.0", "0.3.1", "0.4.0")] * 2
    assert ("mtu" in doc["interfaces"][0]) is (version == "1.1.0")
    assert ("priority" in doc["routes"][0]) is (version == "1.1.0")


def test_add_unconvertible_result_is_one_error() -> None:
    """An L2-only ADD result asked for in 0.2.0 fails with one error object and no partial result."""
    outcome = invoke("ADD", conf("0.2.0"), FakePlugin(Result("1.1.0", interfaces=[Interface("eth0")])))
    err = outcome.error()
    assert err["msg"] == "cannot convert: no valid IP addresses"


@pytest.mark.parametrize("command", ["CHECK", "DEL", "GC", "STATUS"])
def test_commands_without_result_print_nothing(command: str) -> None:
    """CHECK, DEL, GC and STATUS succeed with exit 0 and empty stdout."""
    outcome = invoke(command, conf("1.1.0"))
    assert (outcome.status, outcome.stdout) == (0, "")


def test_add_stdout_is_exactly_one_document() -> None:
    """A successful ADD writes exactly one JSON document and nothing else to stdout."""
    outcome = invoke("ADD", conf("1.1.0"))
    assert outcome.status == 0
    assert outcome.document()["cniVersion"] == "1.1.0"


# ---- the same contract through the installed binary --------------------------------------


@pytest.mark.parametrize("stdin", [None, "garbage"])
def test_binary_version_with_unusable_stdin(stdin: str | None) -> None:
    """T01 via `multiplane-host-local`: VERSION exits 0 with all seven versions."""
    inv = run_binary(OURS_HOST_LOCAL, "VERSION", stdin, container_id=None, netns=None, ifname=None, path=None)
    assert inv.returncode == 0
    assert inv.json["supportedVersions"] == ALL_VERSIONS
    assert inv.json["cniVersion"]


def test_binary_version_echo() -> None:
    """T02 via `multiplane-host-local`: VERSION echoes the requested 0.4.0."""
    stdin = {"cniVersion": "0.4.0"}
    inv = run_binary(OURS_HOST_LOCAL, "VERSION", stdin, container_id="", netns="dummy", ifname="dummy", path="dummy")
    assert (inv.returncode, inv.json["cniVersion"]) == (0, "0.4.0")


def test_binary_empty_environment_prints_about() -> None:
    """T03 via `multiplane-host-local`: an empty environment prints the about text on stderr and exits 0."""
    unset: dict[str, Any] = {"container_id": None, "netns": None, "ifname": None, "path": None}
    inv = run_binary(OURS_HOST_LOCAL, None, None, base_env={}, **unset)  # type: ignore[arg-type]
    assert (inv.returncode, inv.stdout) == (0, "")
    assert inv.stderr.startswith(f"CNI multiplane-host-local plugin {multiplane.__version__}\n")
    assert "CNI protocol versions supported: " + ", ".join(ALL_VERSIONS) in inv.stderr


@pytest.mark.parametrize(
    ("command", "kwargs", "stdin", "code", "msg"),
    [
        ("NOPE", {}, conf(), 4, "unknown CNI_COMMAND: NOPE"),
        (
            "ADD",
            {"netns": None, "ifname": None, "path": None},
            conf(),
            4,
            "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing",
        ),
        ("ADD", {"ifname": "eth0:1"}, conf(), 4, "interface name contains / or : or whitespace characters"),
        ("ADD", {}, b"", 6, None),
        ("ADD", {}, b'{"cniVersion":"1.0.0","type":"x"}', 7, "missing network name"),
        ("ADD", {}, conf("9.9.9"), 1, "incompatible CNI versions"),
        ("CHECK", {}, conf("0.3.1"), 1, "config version does not allow CHECK"),
        ("CHECK", {}, conf("adsf"), 6, None),
        ("GC", {"path": None}, conf("1.1.0"), 4, "required env variables [CNI_PATH] missing"),
        ("GC", {}, conf("1.0.0"), 1, "config version does not allow GC"),
        ("STATUS", {}, conf("0.4.0"), 1, "config version does not allow STATUS"),
        ("GC", {}, b'{"cniVersion":"0.4.0","name":"te%%st","type":"x"}', 7, "invalid characters found in network name"),
    ],
    ids=["T04", "T06", "T08", "T10", "T11", "T13", "T15", "T16", "T19", "T17", "T18", "T21"],
)
def test_binary_error_vectors(command: str, kwargs: dict[str, Any], stdin: bytes, code: int, msg: str | None) -> None:
    """Error vectors via `multiplane-host-local`: exit 1 and one error object with the expected code."""
    inv = run_binary(OURS_HOST_LOCAL, command, stdin, **kwargs)
    assert inv.returncode == 1
    err = inv.error()
    assert set(err) == {"cniVersion", "code", "msg", "details"}
    assert err["code"] == code
    if msg is not None:
        assert err["msg"] == msg
    assert "Traceback" not in inv.stdout


# ---- hostile input: every answer is one UTF-8-encodable JSON object (issue 11) ------------------


def assert_encodable(outcome: Outcome) -> Any:
    """stdout is one JSON document that can be written as UTF-8; returns it."""
    outcome.stdout.encode()  # a lone surrogate here is what killed the binary before
    return outcome.document()


@pytest.mark.parametrize(
    "stdin",
    [
        b'{"cniVersion": "\\ud800", "name": "testnet", "type": "x"}',
        b'{"cniVersion": "1.0.0", "name": "net\\udfff", "type": "x"}',
        b'{"cniVersion": "\\udc80\\ud800", "name": "testnet", "type": "x"}',
    ],
    ids=["version", "name", "two-lone-halves"],
)
def test_lone_surrogate_in_config_is_answered_as_go_does(stdin: bytes) -> None:
    """A `\\ud800`-style escape echoed into an error comes out as U+FFFD (Go's decoder does the same)."""
    outcome = invoke("ADD", stdin)
    err = assert_encodable(outcome)
    assert outcome.status == 1
    assert "\ufffd" in err["msg"] + err["details"]
    assert outcome.plugin.calls == []


def test_lone_surrogate_in_config_reaches_the_plugin_as_replacement_character() -> None:
    """The plugin never sees a lone surrogate: strings are decoded Go's way, keys and nested values too."""
    stdin = b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "k\\ud800": ["a\\udc00", {"b": "\\udbff"}]}'
    outcome = invoke("ADD", stdin)
    assert outcome.status == 0
    ((_, req),) = outcome.plugin.calls
    assert req.conf.raw["k\ufffd"] == ["a\ufffd", {"b": "\ufffd"}]


def test_surrogate_pair_escape_is_kept() -> None:
    """A proper surrogate pair is one character, not two replacements."""
    stdin = b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "emoji": "\\ud83d\\ude00"}'
    outcome = invoke("ADD", stdin)
    assert outcome.plugin.calls[0][1].conf.raw["emoji"] == "\U0001f600"


@pytest.mark.parametrize(
    "stdin",
    [
        b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x\\u0000y"}',
        b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "ipam": {"dataDir": "/tmp/a\\u0000b"}}',
        b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "l": [["\\u0000"]]}',
        b'{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "k\\u0000": 1}',
    ],
    ids=["type", "nested-value", "list", "key"],
)
def test_nul_anywhere_in_config_is_code_7(stdin: bytes) -> None:
    """A NUL character in any string of the config is refused before the plugin runs (it could only reach open/exec)."""
    outcome = invoke("ADD", stdin)
    err = assert_encodable(outcome)
    assert err["code"] == 7
    assert err["msg"].startswith("invalid network config: NUL character in a string at ")
    assert outcome.plugin.calls == []


def test_nul_error_names_where() -> None:
    err = invoke("ADD", b'{"cniVersion":"1.0.0","name":"testnet","type":"x","ipam":{"d":[1,"\\u0000"]}}').error()
    assert err["msg"] == "invalid network config: NUL character in a string at .ipam.d[1]"


@pytest.mark.parametrize(
    "stdin",
    [b"[" * 3000, b'{"a":' * 3000, b'{"cniVersion":"1.0.0","name":"testnet","type":"x","a":' + b"[" * 5000],
    ids=["array", "object", "inside-config"],
)
def test_deep_nesting_is_code_6(stdin: bytes) -> None:
    """JSON nested deeper than the decoder allows is a decoding failure (6), never `internal error`."""
    outcome = invoke("ADD", stdin)
    err = assert_encodable(outcome)
    assert err["code"] == 6
    assert err["msg"] == "error unmarshall network config: exceeded max depth"


@pytest.mark.parametrize(
    "stdin",
    [
        '{"cniVersion": "1.0.0", "name": "testnet", "type": "x"}'.encode("utf-16"),
        '{"cniVersion": "1.0.0", "name": "testnet", "type": "x"}'.encode("utf-32-le"),
        b'\xef\xbb\xbf{"cniVersion": "1.0.0", "name": "testnet", "type": "x"}',
    ],
    ids=["utf-16", "utf-32", "utf-8-bom"],
)
def test_config_must_be_utf8_json(stdin: bytes) -> None:
    """Go reads stdin as UTF-8 only; Python's decoder would also take UTF-16/32: refused with 6."""
    outcome = invoke("ADD", stdin)
    assert assert_encodable(outcome)["code"] == 6
    assert outcome.plugin.calls == []


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_number_beyond_float64_is_code_6(number: str) -> None:
    """A number Go's strconv cannot hold is refused, not read as infinity (which no JSON encoder can write)."""
    stdin = f'{{"cniVersion": "1.0.0", "name": "testnet", "type": "x", "mtu": {number}}}'.encode()
    err = invoke("ADD", stdin).error()
    assert err["code"] == 6
    assert number in err["msg"]


@pytest.mark.parametrize(
    "variable", ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]
)
@pytest.mark.parametrize(
    ("value", "problem"),
    [("\udcff\udcfe", "is not valid UTF-8"), ("a\udc80b", "is not valid UTF-8"), ("a\0b", "contains a NUL character")],
    ids=["surrogateescape", "mixed", "nul"],
)
def test_env_bytes_that_are_not_text_are_code_4(variable: str, value: str, problem: str) -> None:
    """Non-UTF-8 bytes (surrogateescape) or a NUL in any CNI_* variable: code 4 naming it; the plugin never runs."""
    outcome = invoke("ADD", conf(), **{variable: value})
    err = assert_encodable(outcome)
    assert err["code"] == 4
    assert err["msg"] == f"{variable} {problem}"
    assert outcome.plugin.calls == []


def test_env_check_shows_the_bytes() -> None:
    """The details show the offending bytes as escapes, readable in a runtime's log."""
    err = invoke("ADD", conf(), CNI_IFNAME="eth\udcff").error()
    assert err["details"] == "eth\\xff"


def test_internal_error_text_with_surrogates_is_encodable() -> None:
    """An unexpected exception whose text holds a lone surrogate still gives one encodable 999 object."""
    outcome = invoke("ADD", conf(), plugin=FakePlugin(exc=RuntimeError("bad \ud800 \udcff")))
    err = assert_encodable(outcome)
    assert err["code"] == 999
    assert err["msg"] == "internal error: RuntimeError: bad \ufffd \ufffd"


def test_cni_error_with_surrogates_is_encodable() -> None:
    outcome = invoke("ADD", conf(), plugin=FakePlugin(exc=CniError("m\udcff", "d\ud800")))
    assert (assert_encodable(outcome)["msg"], outcome.document()["details"]) == ("m\ufffd", "d\ufffd")


def test_result_with_surrogates_is_encodable() -> None:
    """A result echoing odd text (an interface name from the environment) is written with U+FFFD."""
    result = Result("1.1.0", interfaces=[Interface("e\udcff")])
    outcome = invoke("ADD", conf(), plugin=FakePlugin(result=result))
    assert outcome.status == 0
    assert assert_encodable(outcome)["interfaces"] == [{"name": "e\ufffd"}]


def test_error_that_cannot_be_serialised_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the error object itself cannot be written (a bug), stdout gets one 999 object."""

    class Broken(CniError):
        def to_dict(self, cni_version: str) -> dict[str, object]:
            return {"cniVersion": cni_version, "code": 7, "msg": object()}

    outcome = invoke("ADD", conf(), plugin=FakePlugin(exc=Broken("x")))
    err = assert_encodable(outcome)
    assert (outcome.status, err["code"]) == (1, 999)
    assert err["msg"].startswith("internal error:")
    assert "TypeError" in outcome.stderr


def test_unencodable_answer_becomes_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a handler's answer were not UTF-8 text, the runtime gets an error object instead of a crash."""
    monkeypatch.setattr(skel, "dispatch", lambda plugin, env, stdin: '{"x": "\ud800"}')
    outcome = invoke("ADD", conf())
    err = assert_encodable(outcome)
    assert (outcome.status, err["code"]) == (1, 999)
    assert "UnicodeEncodeError" in outcome.stderr


def test_version_reply_is_go_encoder_output() -> None:
    """VERSION is written as Go's json.Encoder writes it: compact, newline-terminated, through the one encoder."""
    outcome = invoke_env({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "\\ud800"}')
    assert outcome.stdout == (
        '{"cniVersion":"\\ufffd","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n'
    )
    outcome.stdout.encode()


def test_version_ignores_bad_bytes_in_other_variables() -> None:
    """VERSION reads no other CNI_* variable, so their bytes do not matter to it."""
    outcome = invoke("VERSION", b"", CNI_IFNAME="\udcff", CNI_PATH="a\0b")
    assert outcome.status == 0
