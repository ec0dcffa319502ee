"""The one storage layer: every piece of state is opened, listed, committed and appended through a
``Storage`` rooted at a local path, ``file://``, ``s3://bucket/prefix``, ``gs://bucket/prefix`` or a shared
mount.

Commit protocols (object stores have no rename and no ``flock``):

- **Single objects** (JSON state, pickles): written whole. Local files go to a temp file renamed over the
  target; an object store makes one PUT visible at once, and the bytes are assembled before the PUT starts,
  so a crash never leaves a part.
- **Directories** (runs, step outputs): every file first, then ``_manifest.json`` last (see ``publish``). A
  reader treats a directory without its manifest as not there. Locally the directory is still renamed into
  place, as before.
- **Append-only logs** (histories, events, alerts): one immutable segment object per append batch on object
  stores (``log.py``); a local file keeps ``flock`` + fsync.
- **Mutable state files** have exactly one owning writer (an actor); the module that writes one names it.
"""

from raymlops.storage.core import MANIFEST, Storage, export_options, open_storage, storage_uri
from raymlops.storage.staging import Staging, fetch_dir

__all__ = ["MANIFEST", "Staging", "Storage", "export_options", "fetch_dir", "open_storage", "storage_uri"]
