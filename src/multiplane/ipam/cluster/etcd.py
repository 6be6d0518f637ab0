"""The etcd v3 store of cluster-wide IPAM: claims as etcd transactions, through etcd's JSON gateway with etcd3gw.

Keys (values are JSON objects; a pool name has `%` and `/` percent-encoded, a block's `/` is `-`):

    <prefix><pool>/blocks/10.0.0.0-28     the block's owner record ({"node": …})
    <prefix><pool>/ips/10.0.0.5           the address's holder record ({"node", "container", "ifname", "pod"})

* claim: one txn — compare create_revision(key) == 0 (absent) → put the record; else range the key
  and answer the record stored there. The caller tells ours from theirs by that answer (the same
  node for a block; the same container and interface for an address), so a claim repeated after a
  crash between the store's write and the caller's own record is idempotent: it gets its record.
* release: read the key; if the given owner holds it, txn — compare mod_revision == what was read →
  delete. A change in between (another write to the key) is seen and read again; a key that is gone
  or held by someone else is not removed (False). A release retried after an answer was lost may
  therefore report False for a key it did remove: either way the owner no longer holds it.
* reads are etcd's default linearizable ranges: a member cut off from the quorum refuses instead of
  answering stale data.

Endpoints are tried in order, starting with the one that answered last. A connection error, a
timeout, or a 5xx answer (the gateway's 503 for "no leader" / "leader changed" while the cluster
elects) moves to the next endpoint; a whole round of failures is tried again after a short pause
until `timeout` is spent, except a round in which no endpoint accepted a connection at all: that
raises StoreUnavailable (code 11) at once, naming every endpoint and what it answered. A round
in which every TLS handshake failed is a StoreError (a CA or certificate that does not fit will
not heal by waiting); unreadable TLS files are InvalidConfig. One attempt waits at most
max(1 s, timeout / number of endpoints), so a hung member cannot use up the time of the others. A claim retried after an ambiguous failure (the request may have been applied)
is safe: the second attempt finds our own record and answers it.

etcd3gw (docs/decisions/0011) is imported on the first request, not with this module: a CNI call
that builds a store but never asks it anything (its node owns a free block) does not pay for
`requests`. The store is safe to share between threads (one request at a time). Only its own
arguments configure TLS and routing: the environment's REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
proxy variables, which `requests` would otherwise apply over them, are ignored.
"""

from __future__ import annotations

import base64
import json
import threading
import time

from multiplane.errors import InvalidConfig
from multiplane.ipam.cluster.store import StoreError, StoreUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["EtcdStore"]

API_PATH = "/v3/"  # etcd >= 3.4 (Debian 12's etcd-server is 3.4); given, so no /version round trip
_RETRY_PAUSE = (0.05, 0.1, 0.2, 0.4)  # between rounds over every endpoint


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def _pool_part(pool: str) -> str:
    if not pool:
        raise ValueError("empty pool name")
    return pool.replace("%", "%25").replace("/", "%2F")


def _encode_record(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


class _Kv:
    """One key as etcd returned it: the decoded record and its mod_revision."""

    __slots__ = ("key", "record", "mod_revision")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.key = base64.b64decode(raw.get("key", "")).decode("utf-8", "replace")
        self.mod_revision = int(raw.get("mod_revision", 0))  # int64 fields are JSON strings
        value = base64.b64decode(raw.get("value", ""))
        try:
            record = json.loads(value)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise StoreError(f"etcd key {self.key} does not hold a JSON object: {value[:80]!r}")
        self.record: dict[str, Any] = record


class EtcdStore:
    """The Store protocol (store.py) on an etcd v3 cluster; see the module docstring."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        cert: str = "",
        key: str = "",
        ca: str = "",
        timeout: float = 5.0,
        prefix: str = "/multiplane/ipam/",
    ) -> None:
        if not endpoints:
            raise InvalidConfig("etcd: no endpoints given")
        if bool(cert) != bool(key):
            raise InvalidConfig("etcd: a client certificate needs its key and a key its certificate")
        if timeout <= 0:
            raise InvalidConfig(f"etcd: timeout must be positive, not {timeout}")
        tls = bool(cert or ca)
        self._urls: list[tuple[str, str, int]] = [self._parse(e, tls) for e in endpoints]
        self.endpoints = [f"{s}://{f'[{h}]' if ':' in h else h}:{p}" for s, h, p in self._urls]
        self._cert, self._key, self._ca = cert, key, ca
        self.timeout = timeout
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.writes = 0
        self._clients: list[Any] = [None] * len(self._urls)
        self._current = 0
        self._lock = threading.Lock()

    @staticmethod
    def _parse(endpoint: str, tls: bool) -> tuple[str, str, int]:
        """("http"|"https", host, port) of "http://h:2379", "https://[::1]:2379" or "h:2379" (https when TLS files are given)."""
        scheme, sep, rest = endpoint.partition("://")
        if not sep:
            scheme, rest = ("https" if tls else "http"), endpoint
        rest = rest.rstrip("/")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise InvalidConfig(f"etcd: endpoint {endpoint!r} is not http(s)://host:port")
        if rest.startswith("["):
            host, _, port_text = rest[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        try:
            port = int(port_text) if port_text else 2379
        except ValueError:
            raise InvalidConfig(f"etcd: endpoint {endpoint!r} has a bad port") from None
        if not host or not 0 < port < 65536:
            raise InvalidConfig(f"etcd: endpoint {endpoint!r} is not http(s)://host:port")
        return scheme, host, port

    # ---- the Store protocol -------------------------------------------------------------------

    def claim_block(self, pool: str, block: str, owner: dict[str, Any]) -> dict[str, Any]:
        node = owner.get("node")
        if not isinstance(node, str) or not node:
            raise ValueError(f"a block owner needs a node name: {owner!r}")
        return self._claim(self._block_key(pool, block), owner)

    def release_block(self, pool: str, block: str, node: str) -> bool:
        return self._release(self._block_key(pool, block), lambda held: held.get("node") == node)

    def blocks(self, pool: str) -> dict[str, dict[str, Any]]:
        base = self.prefix + _pool_part(pool) + "/blocks/"
        return {kv.key[len(base) :].replace("-", "/"): kv.record for kv in self._range_prefix(base)}

    def claim_ip(self, pool: str, ip: str, holder: dict[str, Any]) -> dict[str, Any]:
        container, ifname = holder.get("container"), holder.get("ifname")
        if not container or not ifname:
            raise ValueError(f"an address holder needs a container and an interface: {holder!r}")
        return self._claim(self._ip_key(pool, ip), holder)

    def release_ip(self, pool: str, ip: str, container: str, ifname: str) -> bool:
        return self._release(
            self._ip_key(pool, ip), lambda held: held.get("container") == container and held.get("ifname") == ifname
        )

    def ips(self, pool: str) -> dict[str, dict[str, Any]]:
        base = self.prefix + _pool_part(pool) + "/ips/"
        return {kv.key[len(base) :]: kv.record for kv in self._range_prefix(base)}

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                if client is not None:
                    client.session.close()
            self._clients = [None] * len(self._urls)

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- keys and transactions ----------------------------------------------------------------

    def _block_key(self, pool: str, block: str) -> str:
        if not block or "-" in block:
            raise ValueError(f"not a block: {block!r}")
        return f"{self.prefix}{_pool_part(pool)}/blocks/{block.replace('/', '-')}"

    def _ip_key(self, pool: str, ip: str) -> str:
        if not ip or "/" in ip:
            raise ValueError(f"not an address: {ip!r}")
        return f"{self.prefix}{_pool_part(pool)}/ips/{ip}"

    def _claim(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Create `key` with `record` unless it exists; the holder after the attempt.

        The caller tells ours from theirs by the answer (its node, or its container and
        interface): a record we wrote before, maybe by an attempt whose answer was lost, is
        answered as it is stored.
        """
        k = _b64(key)
        txn = {
            "compare": [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": k, "value": _b64(_encode_record(record))}}],
            "failure": [{"request_range": {"key": k}}],
        }
        answer = self._request("/kv/txn", txn, f"claim {key}", write=True)
        if answer.get("succeeded"):
            return record
        held = self._txn_range(answer)
        if held is None:  # cannot happen in one txn: the compare failed because the key exists
            raise StoreError(f"etcd: claim of {key} failed but the key is not there")
        return held.record

    def _release(self, key: str, ours: Callable[[dict[str, Any]], bool]) -> bool:
        """Delete `key` if `ours(record)`, guarded by the mod_revision we read."""
        k = _b64(key)
        for _ in range(5):
            found = self._range({"key": k}, f"read {key}")
            if not found or not ours(found[0].record):
                return False
            txn = {
                "compare": [{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": found[0].mod_revision}],
                "success": [{"request_delete_range": {"key": k}}],
                "failure": [],
            }
            if self._request("/kv/txn", txn, f"release {key}", write=True).get("succeeded"):
                return True
        raise StoreError(f"etcd: {key} kept changing while it was being released")

    def _txn_range(self, answer: dict[str, Any]) -> _Kv | None:
        for response in answer.get("responses") or []:
            kvs = (response.get("response_range") or {}).get("kvs") or []
            if kvs:
                return _Kv(kvs[0])
        return None

    def _range(self, body: dict[str, Any], what: str) -> list[_Kv]:
        return [_Kv(raw) for raw in self._request("/kv/range", body, what).get("kvs") or []]

    def _range_prefix(self, prefix: str) -> list[_Kv]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # every key that starts with `prefix`
        return self._range({"key": _b64(prefix), "range_end": _b64(end)}, f"list {prefix}")

    # ---- endpoints ----------------------------------------------------------------------------

    def _client(self, i: int) -> Any:
        client = self._clients[i]
        if client is None:
            from etcd3gw.client import Etcd3Client  # the first request pays for requests (~110 ms)

            scheme, host, port = self._urls[i]
            client = Etcd3Client(
                host=host,
                port=port,
                protocol=scheme,
                ca_cert=self._ca or None,
                cert_cert=self._cert or None,
                cert_key=self._key or None,
                timeout=self.timeout,
                api_path=API_PATH,
            )
            # The store's own settings only: with trust_env, requests lets REQUESTS_CA_BUNDLE or
            # CURL_CA_BUNDLE replace our `ca`, and HTTP(S)_PROXY route etcd traffic via a proxy.
            client.session.trust_env = False
            self._clients[i] = client
        return client

    def _request(self, path: str, body: dict[str, Any], what: str, write: bool = False) -> dict[str, Any]:
        """POST `body` to the gateway's `path` on the first endpoint that answers; its JSON answer."""
        with self._lock:
            return self._failover(path, body, what, write)

    def _failover(self, path: str, body: dict[str, Any], what: str, write: bool) -> dict[str, Any]:
        from etcd3gw import exceptions as gw
        from requests import RequestException
        from requests.exceptions import JSONDecodeError, SSLError

        n = len(self._urls)
        deadline = time.monotonic() + self.timeout
        per_attempt = max(1.0, self.timeout / n)
        failures: dict[str, str] = {}
        round_no = 0
        while True:
            refused = tls_failed = 0
            for _ in range(n):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                i = self._current
                client = self._client(i)
                client.timeout = min(per_attempt, remaining)
                if write:
                    self.writes += 1
                try:
                    answer = client.post(client.get_url(path), json=body)
                except gw.ConnectionFailedError as exc:
                    # etcd3gw raises this for a connection that failed (inside its `except
                    # requests.ConnectionError`) and for an HTTP 503 (no leader, leader changed).
                    if isinstance(exc.__context__, SSLError):
                        refused += 1
                        tls_failed += 1
                        failures[self.endpoints[i]] = f"TLS failed: {_os_error(exc)}"
                    elif isinstance(exc.__context__, RequestException):
                        refused += 1
                        failures[self.endpoints[i]] = f"cannot connect: {_os_error(exc)}"
                    else:
                        failures[self.endpoints[i]] = f"unavailable ({_first_line(exc)})"
                except gw.ConnectionTimeoutError:
                    failures[self.endpoints[i]] = f"no answer within {client.timeout:.1f} s"
                except gw.InternalServerError as exc:
                    failures[self.endpoints[i]] = f"internal error ({_first_line(exc)})"
                except gw.Etcd3Exception as exc:
                    raise StoreError(f"etcd {self.endpoints[i]} refused to {what}: {_first_line(exc)}") from exc
                except JSONDecodeError as exc:  # an answer, but not the gateway's (before RequestException: one too)
                    failures[self.endpoints[i]] = f"bad answer ({exc})"
                except RequestException as exc:  # a bad URL or set-up: not an endpoint's fault
                    raise StoreError(f"etcd {self.endpoints[i]}: cannot {what}: {exc}") from exc
                except OSError as exc:  # requests' check of the TLS files (after RequestException, an OSError too)
                    raise InvalidConfig(
                        f"etcd: unusable TLS files (ca {self._ca!r}, cert {self._cert!r}): {exc}"
                    ) from exc
                else:
                    if not isinstance(answer, dict):
                        raise StoreError(f"etcd {self.endpoints[i]}: unexpected answer to {what}: {answer!r:.200}")
                    return answer
                self._current = (i + 1) % n
            if tls_failed == n:  # will not heal by waiting: a CA, certificate or key that does not fit
                detail = "; ".join(f"{url}: {why}" for url, why in failures.items())
                raise StoreError(
                    f"etcd: TLS failed with every endpoint to {what} ({', '.join(self.endpoints)})", detail
                )
            if refused == n or deadline - time.monotonic() <= 0:
                break
            pause = _RETRY_PAUSE[min(round_no, len(_RETRY_PAUSE) - 1)]
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            round_no += 1
        detail = "; ".join(f"{url}: {why}" for url, why in failures.items())
        raise StoreUnavailable(f"etcd is unavailable: cannot {what} on any of {', '.join(self.endpoints)}", detail)


def _os_error(exc: BaseException) -> str:
    """The system error under requests' and urllib3's wrappers ("Connection refused"), else the first line."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args[:1]):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:200] if str(text).strip() else type(exc).__name__
