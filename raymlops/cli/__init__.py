"""The `raymlops` command: parses arguments, calls the public API, prints results (``commands``); every
failure is one line on stderr, with the traceback in a log file when it was unexpected."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from raymlops.cli.commands import dispatch
from raymlops.cli.parser import parser
from raymlops.errors import ConfigError, RaymlopsError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from raymlops.data.ray_env import SETTINGS

    for k in ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "TRANSFORMERS_VERBOSITY"):  # commands that never start Ray
        os.environ.setdefault(k, SETTINGS[k])
    # SIGTERM (`ray job stop`, a container shutdown) stops every command as Ctrl-C does: the same clean-up
    # runs (a killed MLflow run, a removed partial output, a Serve shutdown).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _fetch_config(args)
        return dispatch(args)
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    except RaymlopsError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a bare traceback: one line, the traceback in a log file
        if type(e).__name__ == "MlflowException":
            print(f"error: MLflow: {str(e)[:1000]}", file=sys.stderr)
            return 1
        print(
            f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0][:500] if str(e) else ''} "
            f"(traceback in {_log_traceback(args)})",
            file=sys.stderr,
        )
        return 1


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _log_traceback(args) -> str:
    """Writes the current exception's traceback to a log file under this machine's cache; returns its path."""
    import traceback

    from raymlops.storage.staging import cache_root

    d = cache_root() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"raymlops-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(f"raymlops {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return str(path)


def _fetch_config(args) -> None:
    """A CONFIG given as a URI (the retrain job's resolved config in object storage) is read through the
    storage layer into a local file first."""
    cfg = getattr(args, "config", None)
    if isinstance(cfg, str) and "://" in cfg and not cfg.startswith("file://"):
        import tempfile

        from raymlops.storage.files import read_file

        fd, local = tempfile.mkstemp(prefix="raymlops-config-", suffix=".yaml")
        with os.fdopen(fd, "wb") as f:
            f.write(read_file(cfg))
        args.config = local
