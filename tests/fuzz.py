"""Schemathesis over every route of a served OpenAPI document (its CLI, against the live server): no 5xx, every
response conforming to the document, every request the document allows accepted, and no warning (a document
looser than the validation shows up as schemathesis' "validation mismatch" warning, which fails the run).

Not checked: that requests outside the document are refused (``negative_data_rejection``). The document is
deliberately a little stricter than the server, so that whatever follows it is valid: an empty ``variant``
means the primary one, a null row field counts as absent, integer bounds are rounded inward to doubles, and
``dataframe_split`` columns are documented in the model's order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "positive_data_acceptance,unsupported_method"
)


def schemathesis(
    openapi_url: str, base_url: str, workdir: Path, max_examples: int = 60, seed: int = 7, exclude: tuple[str, ...] = ()
) -> str:
    """Runs ``schemathesis run`` over the document; returns its output. Raises AssertionError with the
    output when any check or warning fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "schemathesis.toml"
    config.write_text("[warnings]\nfail-on = true\n")
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        openapi_url,
        "--url",
        base_url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--phases",
        "examples,coverage,fuzzing",
        "--report-dir",
        str(workdir / "report"),
    ]
    for path in exclude:
        cmd += ["--exclude-path", path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=workdir)  # its cache goes there
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"schemathesis failed (exit {r.returncode}):\n{out[-20000:]}"
    assert " passed" in out and "No issues found" in out, out[-5000:]
    return out
