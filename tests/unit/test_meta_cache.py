"""The per-container delegate cache `<cniDir>/<containerID>` (multiplane.plugins.meta.cache).

Multus writes the same file before running delegates (multus.md §5.1 step 5) but treats a
corrupt one as "nothing to delete" (#1087); ours is an error naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiplane.errors import CniError
from multiplane.plugins.meta import cache
from multiplane.plugins.meta.networks import NetworkConfig
from multiplane.plugins.meta.plan import Delegate
from multiplane.spec.result import Result

RECORD = {
    "containerID": "mp-c1",
    "netns": "/var/run/netns/mp-pod",
    "ifname": "eth0",
    "pod": {"namespace": "test", "name": "mp-pod", "uid": "mp-uid"},
    "delegates": [
        {"name": "mp-cluster", "config": '{"name":"mp-cluster","type":"x"}', "ifname": "eth0", "master": True}
    ],
}


@pytest.fixture
def cni_dir(tmp_path: Path) -> Path:
    return tmp_path / "mp-cni"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 0 so the modes seen are the ones the code asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_round_trip_adds_the_kind(cni_dir: Path) -> None:
    """What save() writes, load() returns, with `kind: multiplaneCacheV1` added."""
    cache.save(str(cni_dir), "mp-c1", RECORD)
    assert cache.load(str(cni_dir), "mp-c1") == {"kind": "multiplaneCacheV1", **RECORD}
    assert cache.KIND == "multiplaneCacheV1"


def test_file_is_named_by_container_id(cni_dir: Path) -> None:
    """The file is `<cniDir>/<containerID>` and holds plain JSON."""
    cache.save(str(cni_dir), "mp-c1", RECORD)
    assert cache.path_for(str(cni_dir), "mp-c1") == str(cni_dir / "mp-c1")
    assert json.loads((cni_dir / "mp-c1").read_text())["containerID"] == "mp-c1"


def test_missing_cache_is_none(cni_dir: Path) -> None:
    """A container without a cache file (or without the directory) loads as None."""
    assert cache.load(str(cni_dir), "mp-c1") is None
    cni_dir.mkdir()
    assert cache.load(str(cni_dir), "mp-c1") is None


def test_modes_are_0600_file_and_0700_dir(cni_dir: Path, open_umask: None) -> None:
    """Even with umask 0, the cache directory is created 0700 and the file 0600 (it holds pod data)."""
    cache.save(str(cni_dir), "mp-c1", RECORD)
    assert stat.S_IMODE(cni_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cni_dir / "mp-c1").stat().st_mode) == 0o600


def test_replace_is_atomic_and_leaves_no_temp_file(cni_dir: Path) -> None:
    """A second save replaces the file by rename: a reader holding the old file still sees the old content; no temp file stays."""
    cache.save(str(cni_dir), "mp-c1", RECORD)
    with open(cni_dir / "mp-c1", "rb") as old:
        cache.save(str(cni_dir), "mp-c1", {**RECORD, "ifname": "mp-new"})
        assert json.loads(old.read())["ifname"] == "eth0"
    assert json.loads((cni_dir / "mp-c1").read_text())["ifname"] == "mp-new"
    assert sorted(os.listdir(cni_dir)) == ["mp-c1"]


def test_unwritable_directory_is_a_cni_error(tmp_path: Path) -> None:
    """A cniDir that cannot be created (a file is in the way) is a CniError naming the directory."""
    blocker = tmp_path / "mp-file"
    blocker.write_text("x")
    with pytest.raises(CniError) as info:
        cache.save(str(blocker / "sub"), "mp-c1", RECORD)
    assert info.value.msg.startswith(f"cannot write the delegate cache in {blocker / 'sub'}")


def test_corrupt_cache_is_an_error_naming_the_file(cni_dir: Path) -> None:
    """Unlike Multus (which logs and skips every delegate, #1087), a corrupt cache is an error naming its path."""
    cni_dir.mkdir()
    (cni_dir / "mp-c1").write_text('{"kind": "multiplaneCacheV1", "delegates": [')
    with pytest.raises(CniError) as info:
        cache.load(str(cni_dir), "mp-c1")
    assert f"the delegate cache {cni_dir / 'mp-c1'} is corrupt" in info.value.msg


@pytest.mark.parametrize(
    "content",
    [
        {"kind": "cniCacheV1", "delegates": []},
        {"delegates": []},
        {"kind": "multiplaneCacheV1", "delegates": {}},
        {"kind": "multiplaneCacheV1"},
        ["multiplaneCacheV1"],
    ],
)
def test_wrong_kind_or_shape_is_an_error(cni_dir: Path, content: object) -> None:
    """Valid JSON that is not our cache (another kind, no delegate list, not an object) is refused, naming the file."""
    cni_dir.mkdir()
    (cni_dir / "mp-c1").write_text(json.dumps(content))
    with pytest.raises(CniError) as info:
        cache.load(str(cni_dir), "mp-c1")
    assert info.value.msg == f"the delegate cache {cni_dir / 'mp-c1'} is not a multiplane cache"


def test_unreadable_cache_is_an_error_naming_the_file(cni_dir: Path) -> None:
    """A cache path that exists but is not a regular file (a directory) is CacheUnreadable naming it."""
    (cni_dir / "mp-c1").mkdir(parents=True)
    with pytest.raises(cache.CacheUnreadable, match=f"the delegate cache {cni_dir / 'mp-c1'} is not a regular file"):
        cache.load(str(cni_dir), "mp-c1")


def test_symlinked_cache_is_not_followed(cni_dir: Path, tmp_path: Path) -> None:
    """A link planted at the cache path is refused without reading its target, even a valid cache."""
    cache.save(str(cni_dir), "mp-real", RECORD)
    (cni_dir / "mp-c1").symlink_to(cni_dir / "mp-real")
    with pytest.raises(cache.CacheUnreadable, match="symbolic link"):
        cache.load(str(cni_dir), "mp-c1")


def test_save_replaces_a_planted_link_instead_of_writing_through_it(cni_dir: Path, tmp_path: Path) -> None:
    """save() over a symlink replaces the link; the file it pointed to is untouched."""
    victim = tmp_path / "mp-victim"
    victim.write_text("precious")
    cni_dir.mkdir()
    (cni_dir / "mp-c1").symlink_to(victim)
    cache.save(str(cni_dir), "mp-c1", RECORD)
    assert victim.read_text() == "precious"
    assert not (cni_dir / "mp-c1").is_symlink()
    assert cache.load(str(cni_dir), "mp-c1") is not None


def test_cache_of_another_container_is_refused(cni_dir: Path) -> None:
    """A cache file whose containerID is another container's (copied or renamed) is not used."""
    cache.save(str(cni_dir), "mp-c2", RECORD)
    with pytest.raises(cache.CacheUnreadable, match="belongs to container 'mp-c1'"):
        cache.load(str(cni_dir), "mp-c2")


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
def test_corrupt_cache_is_cache_unreadable(cni_dir: Path, content: bytes) -> None:
    """Empty, truncated, non-UTF-8 and absurdly nested files are CacheUnreadable, never another exception."""
    cni_dir.mkdir()
    (cni_dir / "mp-c1").write_bytes(content)
    with pytest.raises(cache.CacheUnreadable):
        cache.load(str(cni_dir), "mp-c1")


def test_remove_deletes_and_tolerates_absence(cni_dir: Path) -> None:
    """remove() deletes the file; removing again (or a never-written one) is fine."""
    cache.save(str(cni_dir), "mp-c1", RECORD)
    cache.remove(str(cni_dir), "mp-c1")
    assert not (cni_dir / "mp-c1").exists()
    cache.remove(str(cni_dir), "mp-c1")
    cache.remove(str(cni_dir / "mp-none"), "mp-c1")


def test_list_containers_ignores_temp_files_and_directories(cni_dir: Path) -> None:
    """list_containers() lists cache files only: not hidden temp files of a crashed writer, not the status/ directory."""
    cache.save(str(cni_dir), "mp-c2", RECORD)
    cache.save(str(cni_dir), "mp-c1", RECORD)
    (cni_dir / ".mp-c3.4242.tmp").write_text("{half")
    (cni_dir / "status").mkdir()
    (cni_dir / "status" / "mp-c1.json").write_text("[]")
    assert cache.list_containers(str(cni_dir)) == ["mp-c1", "mp-c2"]


def test_list_containers_of_missing_dir_is_empty(cni_dir: Path) -> None:
    """A cniDir that does not exist yet has no containers."""
    assert cache.list_containers(str(cni_dir)) == []


def test_stale_temp_file_does_not_disturb_save_or_load(cni_dir: Path) -> None:
    """A temp file left by a crashed writer of the same container does not break the next save and load."""
    cni_dir.mkdir()
    (cni_dir / f".mp-c1.{os.getpid()}.tmp").write_text("garbage")
    cache.save(str(cni_dir), "mp-c1", RECORD)
    assert cache.load(str(cni_dir), "mp-c1") is not None
    assert sorted(os.listdir(cni_dir)) == ["mp-c1"]


def test_delegate_round_trips_through_the_cache(cni_dir: Path) -> None:
    """A delegate with result, args and requests saved through the cache comes back equal, config bytes unchanged."""
    raw = b'{"cniVersion":"0.4.0", "name":"mp-net","plugins":[{"type":"a"},{"type":"b"}]}'
    d = Delegate("test/mp-net", NetworkConfig.parse(raw, "w"))
    d.ifname = "net1"
    d.cni_args = "IgnoreUnknown=true;K8S_POD_NAMESPACE=test;IP=10.0.0.1"
    d.cap_args = {"ips": ["10.0.0.1"], "mac": "c2:11:22:33:44:66"}
    d.args_cni = {"args1": "val1"}
    d.result = Result.parse(
        {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "net1", "sandbox": "/x"}],
            "ips": [{"version": "4", "address": "10.0.0.1/24", "interface": 0}],
        },
        "0.4.0",
    )
    cache.save(str(cni_dir), "mp-c1", {"delegates": [d.to_cache()]})
    loaded = cache.load(str(cni_dir), "mp-c1")
    assert loaded is not None
    back = Delegate.from_cache(loaded["delegates"][0])
    assert (back.name, back.ifname, back.master, back.cni_args) == ("test/mp-net", "net1", False, d.cni_args)
    assert (back.cap_args, back.args_cni) == (d.cap_args, d.args_cni)
    assert back.net.raw == raw and back.net.is_list
    assert back.result is not None and back.result.to_dict("0.4.0") == d.result.to_dict("0.4.0")


def test_delegate_without_result_caches_null() -> None:
    """A delegate not yet run is cached with `result: null` and comes back with no result."""
    d = Delegate("mp-cluster", NetworkConfig.parse(b'{"name":"mp-cluster","type":"x"}', "w"), master=True)
    item = json.loads(json.dumps(d.to_cache()))
    assert item["result"] is None
    back = Delegate.from_cache(item)
    assert back.result is None and back.master
