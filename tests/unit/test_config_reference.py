"""The Markdown reference of the config (`raymlops schema --markdown`, docs/config-reference.md)."""

import re
import subprocess
import sys

from raymlops.config import markdown_reference
from raymlops.config.reference import REGENERATE, sections
from tests.conftest import ROOT, cli_env

DOC = ROOT / "docs" / "config-reference.md"


def test_the_committed_config_reference_is_the_generated_one():
    generated = markdown_reference()
    committed = DOC.read_text() if DOC.exists() else ""
    assert committed == generated, (
        f"{DOC.relative_to(ROOT)} differs from what the config models generate; regenerate it with `{REGENERATE}` "
        "(run from the repository root) and commit it"
    )


def test_every_model_key_and_variant_is_documented_and_every_link_lands():
    text = markdown_reference()
    found = sections()
    for section in found:
        assert f" {section.title}\n" in text, section.title
        doc = section.model.__doc__
        assert doc and " ".join(doc.split())[:40].replace("*", "\\*") in " ".join(text.split()), section.model
        for name, field in section.model.model_fields.items():
            assert field.description, f"{section.model.__name__}.{name} has no description"
            key = field.alias or name
            assert re.search(rf"^### {re.escape(section.title)}\n.*?^\| `{key}` \|", text, re.M | re.S) or re.search(
                rf"^## {re.escape(section.title)}\n.*?^\| `{key}` \|", text, re.M | re.S
            ), (section.path, key)
    titles = [s.title for s in found]
    for variant in [
        "`training.model` (type: xgboost)",
        "`training.model` (type: sklearn)",
        "`training.split` (type: time)",
        "`training.preprocessing[]` (type: custom)",
        "`monitoring.alerts[]` (type: webhook)",
        "`features.online_store` (type: redis)",
        "`training.model.params.<param>`",
        "`sources.<name>`",
    ]:
        assert variant in titles, variant
    anchors = {s.anchor for s in found}
    assert len(anchors) == len(found), "two sections share an anchor"
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, links - anchors
    # A type, default and constraint as the models declare them.
    assert "| `port` | integer | `8000` | >= 1, <= 65535 |" in text
    assert "| `task` | `binary` \\| `multiclass` \\| `regression` | required |" in text
    assert "| `name` | string | required | matches `^[A-Za-z0-9][A-Za-z0-9_.-]*$` |" in text


def test_cli_schema_markdown_prints_the_reference():
    r = subprocess.run(
        [sys.executable, "-m", "raymlops.cli", "schema", "--markdown"],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == markdown_reference()
