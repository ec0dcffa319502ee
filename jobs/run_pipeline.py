"""Entrypoint for `ray job submit`: runs a pipeline config on the cluster the job runs in.

    ray job submit --working-dir . -- python jobs/run_pipeline.py configs/quickstart.yaml

Ray uploads the working directory without git-ignored files, so the quickstart's demo data (git-ignored
under data/) is not there: when a config reads from the demo-data directory (DEMO_DATA, default
data/demo) and it is missing, the job writes the demo dataset there first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir holds the package

from raymlops import ConfigError, Pipeline, RaymlopsError  # noqa: E402
from raymlops.data.demo import write_demo_data  # noqa: E402


def _ensure_demo_data(pipe: Pipeline) -> None:
    demo = Path(os.environ.get("DEMO_DATA", "data/demo")).resolve()
    for src in pipe.config.sources.values():
        path = Path(src.path).resolve()
        if demo in path.parents and not path.exists():
            print(f"demo data missing in the job's working dir; writing it to {demo}", flush=True)
            write_demo_data(demo)
            return


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    try:
        pipe = Pipeline.from_yaml(args.config, args.overrides)
        _ensure_demo_data(pipe)
        result = pipe.run(progress=False)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except RaymlopsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "run_id": result.run_id,
                "run_dir": str(result.run_dir),
                "metrics": result.metrics,
                "model": result.model,
                "endpoint": result.endpoint,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
