"""RedisOnlineStore: the online store on a Redis server (>= 6), through the `redis` client imported lazily.

Layout, all under one key prefix (default: the pipeline name):
  {prefix}:{view}:{encoded key}  hash {values: JSON, ts: event ns, cts: created ns or ""}
  {prefix}:__meta__              hash of metadata (get_meta / set_meta)
  {prefix}:__counts__            hash view -> number of entity keys (kept by the write script)
  {prefix}:{view}:@{level}.{index}:{encoded key}  string: a window-aggregate tile's partial JSON, expiring by
                                 itself (PXAT) once no window can read it (encoded keys never start with '@')
The view is percent-encoded in keys, so no view's keys match another view's `{prefix}:{view}:*` pattern.

Writes run a compare-and-set Lua script (EVALSHA) over chunks of rows, pipelined: each chunk is atomic and the
newer-wins rule makes a retried write idempotent, but a write call as a whole is not atomic (unlike SQLite).
delete_view and count assume no concurrent writes to the same view while a view is deleted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from raymlops.features.online.base import (
    Merge,
    OnlineRecord,
    OnlineStore,
    OnlineStoreError,
    Row,
    Slot,
    Tile,
    check_ts,
    decode_values,
    encode_key,
    encode_values,
)

CHUNK_ROWS = 1000  # rows per script call (the server runs one call at a time: keep each short)
CHUNKS_PER_ROUND_TRIP = 10
READ_BATCH = 10_000  # keys per pipelined read round trip
_FIELDS = ("values", "ts", "cts")

# KEYS[1]: the counts hash; KEYS[2..]: entity keys. ARGV[1]: view; then values, ts, cts per entity key.
# ts/cts are decimal strings compared exactly (Lua numbers are doubles: ns timestamps exceed 2^53); cts "" = None.
_CAS = """
local function cmp(a, b)
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45
  if na ~= nb then return na and -1 or 1 end
  local s = na and -1 or 1
  if #a ~= #b then return (#a < #b and -1 or 1) * s end
  for k = 1, #a do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return (x < y and -1 or 1) * s end
  end
  return 0
end
local written, created = 0, 0
for i = 2, #KEYS do
  local j = (i - 2) * 3 + 2
  local ts, cts = ARGV[j + 1], ARGV[j + 2]
  local old = redis.call('HMGET', KEYS[i], 'ts', 'cts')
  local ok = false
  if not old[1] then
    ok = true
    created = created + 1
  else
    local c = cmp(ts, old[1])
    ok = c > 0 or (c == 0 and (old[2] == '' or (cts ~= '' and cmp(cts, old[2]) >= 0)))
  end
  if ok then
    redis.call('HSET', KEYS[i], 'values', ARGV[j], 'ts', ts, 'cts', cts)
    written = written + 1
  end
end
if created > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], created) end
return written
"""


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class RedisOnlineStore(OnlineStore):
    """Online store on a Redis server.

    Args:
        url: redis://, rediss:// or unix:// URL.
        key_prefix: Prefix of every key this store touches (non-empty).
        socket_timeout: Seconds to wait for any reply.

    Raises:
        OnlineStoreError: The server cannot be reached (the message names the URL).
    """

    def __init__(self, url: str, key_prefix: str, *, socket_timeout: float = 30.0):
        import redis

        if not key_prefix:
            raise OnlineStoreError("the Redis online store needs a non-empty key_prefix")
        self.url = url
        self.key_prefix = key_prefix
        self._redis_errors = (redis.exceptions.RedisError,)
        self._conn_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._meta = f"{key_prefix}:__meta__"
        self._counts = f"{key_prefix}:__counts__"
        self._closed = False
        try:
            self._client = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=5, socket_timeout=socket_timeout
            )
            self._client.ping()
        except (*self._redis_errors, ValueError) as e:
            raise self._wrap(e, "connect") from e
        self._cas = self._client.register_script(_CAS)

    @classmethod
    def from_config(cls, cfg: Any, storage: str, namespace: str) -> RedisOnlineStore:
        """``cfg.url``, keys under ``cfg.key_prefix`` or the pipeline name."""
        return cls(cfg.url, cfg.key_prefix or namespace)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redact(self.url)!r}, key_prefix={self.key_prefix!r})"

    def _wrap(self, e: Exception, op: str) -> OnlineStoreError:
        if isinstance(e, self._conn_errors):
            return OnlineStoreError(f"cannot reach the Redis online store at {redact(self.url)} ({op}): {e}")
        return OnlineStoreError(f"Redis online store at {redact(self.url)}: {op} failed: {e}")

    def _view_prefix(self, view: str) -> str:
        if self._closed:
            raise OnlineStoreError(f"{self!r} is closed")
        return f"{self.key_prefix}:{quote(view, safe='')}:"

    def write(self, view: str, rows: Iterable[Row]) -> int:
        """See OnlineStore.write; atomic per chunk of CHUNK_ROWS rows, not per call (see the module docstring)."""
        vp = self._view_prefix(view)
        written, queued = 0, 0
        pipe = self._client.pipeline(transaction=False)
        keys: list[str] = [self._counts]
        args: list[Any] = [view]
        try:
            for key, rec in rows:
                cts = rec.created_ts
                keys.append(vp + encode_key(key))
                args += (
                    encode_values(rec.values),
                    str(check_ts(rec.event_ts, "event_ts")),
                    "" if cts is None else str(check_ts(cts, "created_ts")),
                )
                if len(keys) > CHUNK_ROWS:
                    self._cas(keys=keys, args=args, client=pipe)
                    keys, args, queued = [self._counts], [view], queued + 1
                    if queued == CHUNKS_PER_ROUND_TRIP:
                        written += sum(pipe.execute())
                        queued = 0
            if len(keys) > 1:
                self._cas(keys=keys, args=args, client=pipe)
                queued += 1
            if queued:
                written += sum(pipe.execute())
        except self._redis_errors as e:
            raise self._wrap(e, f"write to view {view!r}") from e
        finally:
            pipe.reset()
        return written

    def read(self, view: str, keys: Sequence[tuple]) -> list[OnlineRecord | None]:
        """See OnlineStore.read; one round trip per READ_BATCH keys."""
        vp = self._view_prefix(view)
        try:
            if len(keys) == 1:
                replies = [self._client.hmget(vp + encode_key(keys[0]), _FIELDS)]
            else:
                replies = []
                for i in range(0, len(keys), READ_BATCH):
                    pipe = self._client.pipeline(transaction=False)
                    for k in keys[i : i + READ_BATCH]:
                        pipe.hmget(vp + encode_key(k), _FIELDS)
                    replies += pipe.execute()
        except self._redis_errors as e:
            raise self._wrap(e, f"read from view {view!r}") from e
        return [
            None if vals is None else OnlineRecord(decode_values(vals), int(ts), int(cts) if cts else None)
            for vals, ts, cts in replies
        ]

    def _tile_key(self, vp: str, key: tuple, level: int, index: int) -> str:
        return f"{vp}@{level}.{index}:{encode_key(key)}"

    def write_tiles(self, view: str, tiles: Iterable[Tile], merge: Merge | None = None) -> int:
        """See OnlineStore.write_tiles: SET ... PXAT, pipelined; merges in WATCH/MULTI transactions of up to
        CHUNK_ROWS tiles, retried when another writer changed one of them meanwhile."""
        import redis

        vp = self._view_prefix(view)
        now = time.time_ns()
        rows = [
            (self._tile_key(vp, k, level, index), -(-expires // 10**6), partial)
            for k, level, index, expires, partial in tiles
            if expires > now
        ]
        try:
            for i in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[i : i + CHUNK_ROWS]
                if merge is None:
                    pipe = self._client.pipeline(transaction=False)
                    for key, pxat, partial in chunk:
                        pipe.set(key, partial, pxat=pxat)
                    pipe.execute()
                    continue
                with self._client.pipeline(transaction=True) as pipe:
                    while True:
                        try:
                            keys = list(dict.fromkeys(k for k, _, _ in chunk))
                            pipe.watch(*keys)
                            stored = dict(zip(keys, pipe.mget(keys)))
                            for key, _, partial in chunk:  # a key twice in one chunk merges in order
                                stored[key] = merge(stored[key], partial)
                            pipe.multi()
                            for key, pxat in {k: p for k, p, _ in chunk}.items():
                                pipe.set(key, stored[key], pxat=pxat)
                            pipe.execute()
                            break
                        except redis.exceptions.WatchError:
                            continue
        except self._redis_errors as e:
            raise self._wrap(e, f"write of tiles to view {view!r}") from e
        return len(rows)

    def read_tiles(self, view: str, keys: Sequence[tuple], slots: Sequence[Slot]) -> list[dict[Slot, str]]:
        """See OnlineStore.read_tiles: one MGET per entity key, pipelined."""
        vp = self._view_prefix(view)
        slots = list(dict.fromkeys(slots))
        if not slots:
            return [{} for _ in keys]
        try:
            if len(keys) == 1:
                replies = [self._client.mget([self._tile_key(vp, keys[0], lv, ix) for lv, ix in slots])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for k in keys:
                    pipe.mget([self._tile_key(vp, k, lv, ix) for lv, ix in slots])
                replies = pipe.execute()
        except self._redis_errors as e:
            raise self._wrap(e, f"read of tiles from view {view!r}") from e
        return [{slot: v for slot, v in zip(slots, reply) if v is not None} for reply in replies]

    def expire_tiles(self, view: str, now: int) -> int:
        """See OnlineStore.expire_tiles: Redis expires tiles itself (PXAT)."""
        self._view_prefix(view)
        return 0

    def get_meta(self, key: str) -> str | None:
        """See OnlineStore.get_meta."""
        self._view_prefix("")  # raises if closed
        try:
            return self._client.hget(self._meta, key)
        except self._redis_errors as e:
            raise self._wrap(e, "get_meta") from e

    def set_meta(self, key: str, value: str) -> None:
        """See OnlineStore.set_meta."""
        self._view_prefix("")
        try:
            self._client.hset(self._meta, key, value)
        except self._redis_errors as e:
            raise self._wrap(e, "set_meta") from e

    def delete_view(self, view: str) -> None:
        """See OnlineStore.delete_view: SCAN + UNLINK over the view's keys, then its count."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._view_prefix(view)) + "*"
        try:
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
            self._client.hdel(self._counts, view)
        except self._redis_errors as e:
            raise self._wrap(e, f"delete_view {view!r}") from e

    def count(self, view: str) -> int:
        """See OnlineStore.count (O(1): a counter the write script keeps)."""
        self._view_prefix(view)
        try:
            return int(self._client.hget(self._counts, view) or 0)
        except self._redis_errors as e:
            raise self._wrap(e, "count") from e

    def close(self) -> None:
        """Disconnects the client's connection pool."""
        if not self._closed:
            self._closed = True
            self._client.close()
