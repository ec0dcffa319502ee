"""The RayService's serveConfigV2 is the real `serve --export` file of a trained quickstart, and Serve's own
deploy schema accepts it."""

from __future__ import annotations

import yaml

from raymlops.pipeline.k8s import check, render


def test_the_rayservice_carries_the_exported_serve_config(quickstart, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    pipe, result = quickstart
    exported = yaml.safe_load(pipe.export_serve_config(tmp_path / "serve.yaml", result.run_dir).read_text())
    paths = render(
        pipe.config, "configs/quickstart.yaml", "registry.example/raymlops:1", tmp_path / "k8s", serve_config=exported
    )
    (service,) = [yaml.safe_load(p.read_text()) for p in paths if p.name.endswith("-rayservice.yaml")]
    assert check(service) == []
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(served) if hasattr(
        ServeDeploySchema, "model_validate"
    ) else ServeDeploySchema.parse_obj(served)
    assert served["applications"] == exported["applications"]  # the app as `serve --export` wrote it
    assert served["http_options"] == {"host": "0.0.0.0", "port": 8000}
