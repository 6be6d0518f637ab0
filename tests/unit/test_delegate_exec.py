"""Delegation to external plugins: lookup in CNI_PATH, exact stdin and environment, libcni's answer parsing."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from multiplane.delegate.exec import ExecDelegator, find_plugin, parse_error
from multiplane.errors import CniError, DelegateError, InvalidConfig, TryAgainLater
from tests.cni import OURS_HOST_LOCAL, REF_HOST_LOCAL


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    d = tmp_path / "mp-bin"
    d.mkdir()
    return d


def test_find_plugin_takes_first_directory_holding_a_regular_file(tmp_path: Path) -> None:
    """The first CNI_PATH entry with a regular file of that name wins; a directory of that name is skipped."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "spy").mkdir()
    _script(second, "spy", "exit 0\n")
    assert find_plugin("spy", [str(tmp_path / "missing"), str(first), str(second)]) == str(second / "spy")


def test_find_plugin_follows_symlinks(tmp_path: Path) -> None:
    """A symlink to a regular file counts, as libcni's stat-based lookup does."""
    target = _script(tmp_path, "real", "exit 0\n")
    (tmp_path / "mp-link").symlink_to(target)
    assert find_plugin("mp-link", [str(tmp_path)]) == str(tmp_path / "mp-link")


@pytest.mark.parametrize("name", ["", "../host-local", "a/b", "a\\b", "/usr/lib/cni/host-local"])
def test_plugin_names_with_path_separators_are_refused(name: str) -> None:
    """A `type` that is empty or carries a path separator is an invalid config (code 7)."""
    with pytest.raises(InvalidConfig) as info:
        find_plugin(name, ["/usr/lib/cni"])
    assert info.value.code == 7


def test_missing_plugin_names_the_search_path() -> None:
    """A plugin not found anywhere gives libcni's message listing the directories."""
    with pytest.raises(CniError) as info:
        find_plugin("mp-nosuchplugin", ["/usr/lib/cni", "/opt/mp-none"])
    assert info.value.msg == 'failed to find plugin "mp-nosuchplugin" in path [/usr/lib/cni /opt/mp-none]'


def test_empty_path_list_is_an_error() -> None:
    """No directories at all is reported as such."""
    with pytest.raises(CniError, match="no paths provided"):
        find_plugin("host-local", [])


def test_delegate_gets_exact_stdin_and_env_with_only_command_changed(bindir: Path, tmp_path: Path) -> None:
    """The delegate sees our stdin byte for byte and our environment with CNI_COMMAND replaced."""
    out = tmp_path / "mp-seen"
    _script(bindir, "spy", f'env > {out}.env\ncat > {out}.stdin\necho \'{{"cniVersion":"1.0.0"}}\'\n')
    stdin = b'{"name":"n",  "b":1,"a":2, "cniVersion":"1.0.0","type":"spy"}\n'
    env = {
        "CNI_COMMAND": "CHECK",
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "net1",
        "MP_MARK": "x y",
        "PATH": "/usr/bin:/bin",
    }
    ExecDelegator([str(bindir)]).add("spy", stdin, env, "1.0.0")
    assert (tmp_path / "mp-seen.stdin").read_bytes() == stdin
    seen = dict(line.split("=", 1) for line in (tmp_path / "mp-seen.env").read_text().splitlines() if "=" in line)
    assert seen["CNI_COMMAND"] == "ADD"
    assert seen["CNI_CONTAINERID"] == "c1" and seen["CNI_IFNAME"] == "net1" and seen["MP_MARK"] == "x y"


def test_result_without_cni_version_takes_the_config_version(bindir: Path) -> None:
    """T63: a result with no cniVersion is read in the config's version."""
    _script(bindir, "spy", 'echo \'{"ips":[{"address":"10.0.0.2/24"}]}\'\n')
    result = ExecDelegator([str(bindir)]).add("spy", b"{}", {}, "1.0.0")
    assert result.cni_version == "1.0.0"
    assert [str(ip.address) for ip in result.ips] == ["10.0.0.2/24"]


def test_add_with_empty_output_is_an_error(bindir: Path) -> None:
    """T62: ADD that prints nothing and exits 0 is libcni's unmarshal error."""
    _script(bindir, "spy", "exit 0\n")
    with pytest.raises(CniError, match="failed to unmarshal raw result: unexpected end of JSON input"):
        ExecDelegator([str(bindir)]).add("spy", b"{}", {}, "1.0.0")


def test_delegate_error_code_is_kept(bindir: Path) -> None:
    """T64: the delegate's error object passes through with its code (11 stays 11)."""
    _script(
        bindir, "spy", 'echo \'{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"lock busy"}\'\nexit 1\n'
    )
    with pytest.raises(DelegateError) as info:
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {})
    assert (info.value.error_code, info.value.msg, info.value.details) == (11, "try again", "lock busy")
    assert str(info.value) == "try again; lock busy"


def test_failure_with_only_stderr_uses_the_stderr_text(bindir: Path) -> None:
    """T65: exit 2 with nothing on stdout reports the stderr text (our code: 999, libcni's 0 is not a spec code)."""
    _script(bindir, "spy", "echo 'boom on stderr' >&2\nexit 2\n")
    with pytest.raises(DelegateError) as info:
        ExecDelegator([str(bindir)]).check("spy", b"{}", {})
    assert info.value.msg == 'netplugin failed: "boom on stderr\n"'
    assert info.value.error_code == 999


def test_result_followed_by_error_is_unparseable(bindir: Path) -> None:
    """T66: two JSON documents on stdout cannot be read as an error."""
    _script(bindir, "spy", 'echo \'{"cniVersion":"1.0.0"}\'\necho \'{"code":7,"msg":"x"}\'\nexit 1\n')
    with pytest.raises(DelegateError, match="netplugin failed but error parsing its diagnostic message"):
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {})


def test_failure_without_any_message() -> None:
    """A silent non-zero exit still produces a readable error."""
    err = parse_error(3, b"", b"")
    assert err.msg == "netplugin failed with no error message: exit status 3"


def test_delegate_that_hangs_is_killed_and_reported_as_try_again(bindir: Path) -> None:
    """A plugin running past the timeout is killed; the runtime is told to try again (code 11)."""
    _script(bindir, "spy", "exec sleep 30\n")
    started = time.monotonic()
    with pytest.raises(TryAgainLater) as info:
        ExecDelegator([str(bindir)], timeout=0.5).delete("spy", b"{}", {})
    assert info.value.code == 11
    assert time.monotonic() - started < 10


def test_text_file_busy_is_retried(bindir: Path) -> None:
    """exec failing with ETXTBSY (binary being written) is retried until the writer closes it."""
    path = bindir / "spy"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o755)
    os.write(fd, b'#!/bin/sh\necho \'{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24"}]}\'\n')
    os.fchmod(fd, stat.S_IRWXU)
    closer = threading.Timer(1.2, os.close, args=(fd,))
    closer.start()
    try:
        result = ExecDelegator([str(bindir)]).add("spy", b"{}", {}, "1.0.0")
    finally:
        closer.join()
    assert str(result.ips[0].address) == "10.9.0.5/24"


@pytest.mark.parametrize("binary", [REF_HOST_LOCAL, OURS_HOST_LOCAL], ids=["reference", "ours"])
def test_real_ipam_plugin_through_the_delegator(binary: str, tmp_path: Path) -> None:
    """A real host-local binary allocates through ExecDelegator, and DEL releases the address."""
    bindir = tmp_path / "mp-bin"
    bindir.mkdir()
    plugin = os.path.basename(binary)  # our binary picks its personality from this name
    (bindir / plugin).symlink_to(binary)
    data = tmp_path / "mp-data"
    conf = {
        "cniVersion": "1.0.0",
        "name": "mp-delegnet",
        "type": "macvlan",
        "ipam": {"type": plugin, "dataDir": str(data), "ranges": [[{"subnet": "10.42.0.0/29"}]]},
    }
    stdin = json.dumps(conf).encode()
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": str(bindir)}
    delegator = ExecDelegator([str(bindir)])
    result = delegator.add(plugin, stdin, env, "1.0.0")
    assert [str(ip.address) for ip in result.ips] == ["10.42.0.2/29"]
    assert (data / "mp-delegnet" / "10.42.0.2").read_bytes() == b"c1\r\neth0"
    delegator.check(plugin, stdin, env)
    delegator.delete(plugin, stdin, env)
    assert not (data / "mp-delegnet" / "10.42.0.2").exists()
    with pytest.raises(DelegateError, match="Failed to find address added by container c1"):
        delegator.check(plugin, stdin, env)


# ---- hostile plugin types and environments (issue 11) ------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a\0b", "host-local\0", "a\nb", "a\tb", "\x7f", "ho\udcffst", "\ud800", ".", ".."],
    ids=["nul", "trailing-nul", "newline", "tab", "del", "surrogateescape", "lone-surrogate", "dot", "dotdot"],
)
def test_plugin_names_that_cannot_name_a_binary_are_code_7(name: str, tmp_path: Path) -> None:
    """NUL, control characters and text that is not UTF-8 are refused (7) before any directory is searched."""
    with pytest.raises(InvalidConfig) as info:
        find_plugin(name, [str(tmp_path)])
    assert info.value.code == 7
    assert info.value.msg.startswith("invalid plugin name: ")
    info.value.msg.encode()  # shown with escapes, never as raw surrogates


def test_invalid_name_is_refused_even_without_paths() -> None:
    """The name is checked first: a bad name with no search path is still code 7."""
    with pytest.raises(InvalidConfig):
        find_plugin("a\0b", [])


def test_search_directories_that_cannot_be_paths_are_skipped(bindir: Path) -> None:
    """A NUL or a lone surrogate in a search directory is a directory that is not there, not a crash."""
    _script(bindir, "spy", "exit 0\n")
    assert find_plugin("spy", ["/opt/a\0b", "/opt/\ud800", str(bindir)]) == str(bindir / "spy")
    with pytest.raises(CniError) as info:
        find_plugin("spy", ["/opt/a\0b"])
    assert info.value.msg.startswith('failed to find plugin "spy"')


@pytest.mark.parametrize(
    "env",
    [{"MP_X": "a\0b"}, {"MP_X": "\ud800"}, {"MP\0X": "1"}, {"MP=X": "1"}],
    ids=["nul-value", "surrogate-value", "nul-key", "equals-key"],
)
def test_environment_exec_cannot_carry_is_code_4(bindir: Path, env: dict[str, str]) -> None:
    """An environment execve cannot take (possible only in-process) is an environment error, not a ValueError."""
    _script(bindir, "spy", "exit 0\n")
    with pytest.raises(CniError) as info:
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {"PATH": "/usr/bin:/bin", **env})
    assert info.value.code == 4
    assert info.value.msg.startswith('cannot execute plugin "spy": ')


def test_delegate_stderr_is_copied_even_when_ours_has_no_bytes_layer(
    bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stderr without `.buffer` (or none at all) does not turn the delegate's answer into a crash."""
    import io
    import sys

    _script(bindir, "spy", 'echo oops >&2\necho \'{"cniVersion":"1.0.0"}\'\n')
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert ExecDelegator([str(bindir)]).add("spy", b"{}", {}, "1.0.0").cni_version == "1.0.0"
    monkeypatch.setattr(sys, "stderr", None)
    assert ExecDelegator([str(bindir)]).add("spy", b"{}", {}, "1.0.0").cni_version == "1.0.0"
