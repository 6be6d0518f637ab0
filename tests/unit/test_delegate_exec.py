"""Delegation to external plugins: lookup in CNI_PATH, exact stdin and environment, libcni's answer parsing."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from multiplane.delegate import exec as exec_module
from multiplane.delegate.exec import ExecDelegator, find_plugin, parse_error, root_helper
from multiplane.errors import CniError, DelegateError, InvalidConfig, PluginNotFound, TryAgainLater
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


# ---- how the delegate is started: posix_spawn, descriptors, environment, signals (issue 10) -----


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd") if _is_open(int(n))}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _gone(pid: int) -> bool:
    """No process `pid`, not even a zombie waiting to be reaped."""
    return not os.path.exists(f"/proc/{pid}")


def _python_plugin(directory: Path, name: str, body: str) -> Path:
    """A plugin in Python (isolated, no site): nothing of a shell's own descriptors in what it sees."""
    path = directory / name
    path.write_text("#!/usr/bin/python3 -IS\nimport json, os, sys\n" + body)
    path.chmod(0o755)
    return path


def test_delegate_is_started_by_posix_spawn_as_our_direct_child(
    bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.posix_spawn starts the plugin itself (argv [path], the environment given), and the plugin's parent is us."""
    out = tmp_path / "mp-ppid"
    _script(bindir, "spy", f"echo $PPID > {out}\necho '{{}}'\n")
    spawned: list[tuple[str, list[str], dict[str, str]]] = []
    real = os.posix_spawn

    def spy(path: str, argv: list[str], env: dict[str, str], **kwargs: object) -> int:
        spawned.append((path, argv, dict(env)))
        return real(path, argv, env, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "posix_spawn", spy)
    ExecDelegator([str(bindir)]).check("spy", b"{}", {"MP_MARK": "1"})
    assert spawned == [(str(bindir / "spy"), [str(bindir / "spy")], {"MP_MARK": "1", "CNI_COMMAND": "CHECK"})]
    assert int(out.read_text()) == os.getpid()


def test_only_descriptors_0_1_2_reach_the_delegate(bindir: Path, tmp_path: Path) -> None:
    """A socket we hold and even a descriptor we made inheritable stay out of the plugin: it sees 0, 1 and 2."""
    out = tmp_path / "mp-fds"
    _python_plugin(
        bindir,
        "spy",
        "names = os.listdir('/proc/self/fd')\n"
        "fds = []\n"
        "for n in names:\n"
        "    try:\n"
        "        os.fstat(int(n))\n"
        "        fds.append(int(n))\n"
        "    except OSError:\n"
        "        pass  # the listing's own descriptor, closed by now\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sorted(fds)))\n",
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    held = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(held, True)  # as the runtime launcher's tree lock is: posix_spawn would pass it on
    try:
        assert sock.fileno() > 2 and held > 2 and os.get_inheritable(held)
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {})
        assert _is_open(held)  # closed in the child only
    finally:
        sock.close()
        os.close(held)
    assert json.loads(out.read_text()) == [0, 1, 2]


def test_delegate_environment_is_exactly_the_one_given(
    bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's initial environment is the request's, plus CNI_COMMAND: nothing of this process's own."""
    out = tmp_path / "mp-environ"
    _script(bindir, "spy", f"cat /proc/$$/environ > {out}\n")
    monkeypatch.setenv("MP_DAEMON_ONLY", "1")
    env = {"CNI_CONTAINERID": "c1", "MP_MARK": "x y", "PATH": "/usr/bin:/bin"}
    ExecDelegator([str(bindir)]).delete("spy", b"{}", env)
    seen = dict(item.split("=", 1) for item in out.read_text().split("\0") if item)
    assert seen == {**env, "CNI_COMMAND": "DEL"}


def test_delegate_starts_in_our_working_directory(
    bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No chdir: the plugin starts where we are (libcni's child: the runtime's directory; the daemon's is "/")."""
    out = tmp_path / "mp-cwd"
    _script(bindir, "spy", f"pwd -P > {out}\n")
    work = tmp_path / "mp-work"
    work.mkdir()
    monkeypatch.chdir(work)
    ExecDelegator([str(bindir)]).delete("spy", b"{}", {})
    assert out.read_text().strip() == str(work.resolve())


def test_delegate_gets_an_empty_signal_mask_and_default_sigpipe(bindir: Path, tmp_path: Path) -> None:
    """Whatever the calling thread blocks, the plugin blocks nothing; SIGPIPE and SIGXFSZ (Python ignores them) are not ignored."""
    out = tmp_path / "mp-signals"
    _script(bindir, "spy", f"exec grep -E '^Sig(Blk|Ign):' /proc/self/status > {out}\n")
    failures: list[BaseException] = []

    def call() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
        try:
            ExecDelegator([str(bindir)]).delete("spy", b"{}", {})
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert failures == []
    masks = dict(line.split(":\t") for line in out.read_text().splitlines())
    assert int(masks["SigBlk"], 16) == 0
    ignored = int(masks["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_large_stdin_stdout_and_stderr_do_not_deadlock(bindir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """1 MiB in, 300 KB on stderr before the plugin reads a byte, 300 KB of result after: all of it arrives."""
    _script(
        bindir,
        "spy",
        "head -c 300000 /dev/zero | tr '\\0' e >&2\n"
        "n=$(wc -c)\n"
        'printf \'{"cniVersion":"1.0.0","dns":{"domain":"%s","search":["%s"]}}\' '
        '"$n" "$(head -c 300000 /dev/zero | tr \'\\0\' o)"\n',
    )
    stdin = b'{"pad":"' + b"i" * (1 << 20) + b'"}'
    capfd.readouterr()
    result = ExecDelegator([str(bindir)], timeout=30).add("spy", stdin, {}, "1.0.0")
    assert result.dns is not None
    assert result.dns.domain == str(len(stdin))
    assert result.dns.search == ["o" * 300000]
    assert capfd.readouterr().err == "e" * 300000


def test_stdin_the_plugin_never_reads_is_not_an_error(bindir: Path) -> None:
    """A plugin that answers without reading a 1 MiB stdin succeeds (the broken pipe is ignored, as libcni does)."""
    _script(bindir, "spy", 'echo \'{"cniVersion":"1.0.0"}\'\n')
    assert ExecDelegator([str(bindir)]).add("spy", b"x" * (1 << 20), {}, "1.0.0").cni_version == "1.0.0"


def test_timed_out_delegate_is_killed_and_reaped(bindir: Path, tmp_path: Path) -> None:
    """Past the timeout the plugin is SIGKILLed and reaped: no process left, not even a zombie."""
    pidfile = tmp_path / "mp-pid"
    _script(bindir, "spy", f"echo $$ > {pidfile}\nexec sleep 30\n")
    before = _open_fds()
    with pytest.raises(TryAgainLater):
        ExecDelegator([str(bindir)], timeout=0.5).delete("spy", b"{}", {})
    assert _gone(int(pidfile.read_text()))
    assert _open_fds() == before


def test_delegate_that_closes_its_pipes_and_runs_on_is_killed_at_the_timeout(bindir: Path, tmp_path: Path) -> None:
    """Closed stdout and stderr are not an exit: the wait for it keeps the deadline, then kills and reaps."""
    pidfile = tmp_path / "mp-pid"
    _script(bindir, "spy", f"echo $$ > {pidfile}\nexec sleep 30 >&- 2>&- <&-\n")
    started = time.monotonic()
    with pytest.raises(TryAgainLater):
        ExecDelegator([str(bindir)], timeout=0.5).delete("spy", b"{}", {})
    assert time.monotonic() - started < 5
    assert _gone(int(pidfile.read_text()))


def test_delegate_is_reaped_when_the_call_is_interrupted(bindir: Path, tmp_path: Path) -> None:
    """An exception raised into the waiting call (here by a signal handler) still kills and reaps the plugin."""
    pidfile = tmp_path / "mp-pid"
    _script(bindir, "spy", f"echo $$ > {pidfile}\nexec sleep 30\n")

    class Interrupted(Exception):
        pass

    def interrupt(_signum: int, _frame: object) -> None:
        raise Interrupted

    before = _open_fds()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted):
            ExecDelegator([str(bindir)], timeout=30).delete("spy", b"{}", {})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _gone(int(pidfile.read_text()))
    assert _open_fds() == before


def test_sixteen_threads_each_get_their_own_answer(bindir: Path) -> None:
    """16 calls at once from 16 threads: each gets the result for its own environment and stdin, no descriptor leaks."""
    _script(
        bindir,
        "spy",
        "read -r line\nsleep 0.2\n"
        'printf \'{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.%s/24"}],"dns":{"domain":"%s"}}\' '
        '"${CNI_CONTAINERID#c}" "$line"\n',
    )
    delegator = ExecDelegator([str(bindir)], timeout=30)
    before = _open_fds()
    start = threading.Barrier(16)
    answers: dict[int, tuple[str, str]] = {}
    failures: list[BaseException] = []

    def call(i: int) -> None:
        try:
            start.wait()
            result = delegator.add("spy", f"mp-stdin-{i}\n".encode(), {"CNI_CONTAINERID": f"c{i}"}, "1.0.0")
            answers[i] = (str(result.ips[0].address), result.dns.domain if result.dns else "")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert answers == {i: (f"10.1.0.{i}/24", f"mp-stdin-{i}") for i in range(16)}
    assert _open_fds() == before


def test_delegate_runs_when_our_own_stdin_stdout_stderr_are_closed(bindir: Path) -> None:
    """With our 0, 1 and 2 closed the pipes get those numbers first: the plugin must still get its own stdin and stdout."""
    _script(bindir, "spy", 'read -r line\nprintf \'{"cniVersion":"1.0.0","dns":{"domain":"%s"}}\' "$line"\n')
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    try:
        for fd in (0, 1, 2):
            os.close(fd)
        result = ExecDelegator([str(bindir)]).add("spy", b"mp-line\n", {}, "1.0.0")
    finally:
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)
    assert result.dns is not None and result.dns.domain == "mp-line"


def test_delegate_killed_by_a_signal_reports_it(bindir: Path) -> None:
    """A plugin that dies of a signal fails with its negative status, as subprocess reported it."""
    _script(bindir, "spy", "kill -9 $$\n")
    with pytest.raises(DelegateError, match="exit status -9"):
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {})


def test_not_executable_plugin_is_reported(bindir: Path) -> None:
    """A plugin file without execute permission: libcni's exec failure, with the reason."""
    (bindir / "spy").write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(CniError) as info:
        ExecDelegator([str(bindir)]).delete("spy", b"{}", {})
    assert info.value.msg == f'failed to execute plugin "{bindir / "spy"}": Permission denied'


# ---- running plugins inside a root (the daemon's chrootDir) ----------------------------------------


@pytest.fixture
def fakeroot(tmp_path: Path) -> Path:
    """A directory standing for the host's "/" as the daemon sees it (no chroot needed to look things up)."""
    root = tmp_path / "mp-root"
    (root / "usr/lib/cni").mkdir(parents=True)
    (root / "opt/cni/bin").mkdir(parents=True)
    _script(root / "usr/lib/cni", "spy", "exit 0\n")
    return root


def test_lookup_under_a_root_resolves_absolute_links_inside_it(fakeroot: Path) -> None:
    """/opt/cni/bin/spy -> /usr/lib/cni/spy means the root's /usr/lib/cni, never ours."""
    (fakeroot / "opt/cni/bin/spy").symlink_to("/usr/lib/cni/spy")
    (fakeroot / "opt/cni/bin/bridge").symlink_to("/usr/lib/cni/bridge")  # ours has it, the root has not
    assert os.path.exists("/usr/lib/cni/bridge")
    assert find_plugin("spy", ["/opt/cni/bin"], str(fakeroot)) == "/opt/cni/bin/spy"
    with pytest.raises(PluginNotFound) as info:
        find_plugin("bridge", ["/opt/cni/bin"], str(fakeroot))
    assert info.value.msg == f'failed to find plugin "bridge" in path [/opt/cni/bin] under root {fakeroot}'


def test_lookup_under_a_root_cannot_climb_out_of_it(fakeroot: Path, tmp_path: Path) -> None:
    """`..` in a link or a directory stops at the root, as it does for a chrooted process."""
    _script(tmp_path, "spy", "exit 0\n")  # next to the root: reachable only by climbing out
    (fakeroot / "opt/cni/bin/up").symlink_to("../../../../spy")
    with pytest.raises(PluginNotFound):
        find_plugin("up", ["/opt/cni/bin"], str(fakeroot))
    with pytest.raises(PluginNotFound):
        find_plugin("spy", ["/../.."], str(fakeroot))
    assert (
        find_plugin("spy", ["/../../usr/lib/cni"], str(fakeroot)) == "/../../usr/lib/cni/spy"
    )  # as the kernel reads it


def test_lookup_under_a_root_takes_relative_directories_from_its_top(fakeroot: Path) -> None:
    """A relative search directory is the root's: the answer is absolute, as the helper runs it from "/"."""
    (fakeroot / "opt/cni/bin/mp-rel").symlink_to("../../../usr/lib/cni/spy")
    assert find_plugin("spy", ["usr/lib/cni"], str(fakeroot)) == "/usr/lib/cni/spy"
    assert find_plugin("mp-rel", ["/opt/cni/bin"], str(fakeroot)) == "/opt/cni/bin/mp-rel"


def test_lookup_under_a_root_stops_at_a_link_loop(fakeroot: Path) -> None:
    """A symlink loop is a plugin not found, not a hang."""
    (fakeroot / "opt/cni/bin/loop").symlink_to("/opt/cni/bin/loop")
    with pytest.raises(PluginNotFound):
        find_plugin("loop", ["/opt/cni/bin"], str(fakeroot))


def test_root_helper_is_the_trees_launcher_when_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the runtime tree the launcher beside the interpreter runs plugins in a root; elsewhere coreutils' chroot."""
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert root_helper() == ("/usr/sbin/chroot", ["chroot"])
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/var/lib/mp-tree/python3.11")
    assert root_helper() == ("/var/lib/mp-tree/launcher", ["/var/lib/mp-tree/launcher", "--exec-in-root"])


def test_helper_failure_is_told_apart_from_the_plugins_own() -> None:
    """Status 125-127, no stdout and the helper's prefix: the helper failed; anything else is the plugin's answer."""
    said = b"multiplane: exec-in-root: exec /opt/cni/bin/x: No such file or directory\n"
    assert exec_module._helper_failure(127, b"", said) == "exec /opt/cni/bin/x: No such file or directory"
    assert exec_module._helper_failure(
        125, b"", b"chroot: cannot change root directory to '/x': No such file or directory\n"
    )
    assert exec_module._helper_failure(127, b'{"code":7,"msg":"m"}', said) is None
    assert exec_module._helper_failure(1, b"", said) is None
    assert exec_module._helper_failure(127, b"", b"my own failure\n") is None


@pytest.mark.parametrize(("root", "kept"), [("", ""), ("/", ""), ("/hostroot/", "/hostroot"), ("/h//r/.", "/h/r")])
def test_root_is_normalised(root: str, kept: str) -> None:
    """No root and "/" both mean our own root; the path is normalised."""
    assert ExecDelegator(["/opt/cni/bin"], root=root).root == kept


def test_relative_root_is_refused() -> None:
    """A root relative to our working directory is a configuration mistake."""
    with pytest.raises(ValueError, match="absolute"):
        ExecDelegator(["/opt/cni/bin"], root="hostroot")
