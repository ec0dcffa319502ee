"""MLflow's private APIs used by raymlops, each behind one function (tests/unit/test_compat.py fails when an
MLflow upgrade moves one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kept_uri_globals() -> Iterator[None]:
    """Restores MLflow's process-wide tracking and registry URIs (what ``mlflow.set_tracking_uri`` and
    ``mlflow.set_registry_uri`` set) when the block ends, as they were before it: unset ones unset.

    Private: ``mlflow.tracking._tracking_service.utils._tracking_uri`` and
    ``mlflow.tracking._model_registry.utils._registry_uri``. ``mlflow.get_tracking_uri()`` cannot stand in
    for them: it falls back to $MLFLOW_TRACKING_URI or a default, so an unset URI would come back set.
    Public alternative: ``mlflow.MlflowClient(tracking_uri=..., registry_uri=...)``, which touches no
    global (raymlops' own reads and writes use it); only code on MLflow's fluent API (``mlflow.pyfunc``,
    ``mlflow.<flavor>.log_model``) needs the globals. MLflow's own helper for this,
    ``mlflow.tracking._tracking_service.utils._use_tracking_uri``, is private too and covers only the
    tracking URI.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


def dataset_entity(ds):
    """The ``mlflow.entities.Dataset`` of an ``mlflow.data`` dataset (what ``MlflowClient.log_inputs``
    takes, inside a ``DatasetInput``).

    Private: ``mlflow.data.dataset.Dataset._to_mlflow_entity`` (MLflow's own ``mlflow.log_input`` and
    autologgers call it). Public alternative: ``mlflow.entities.Dataset(**fields)`` built from the public
    ``ds.to_dict()`` (name, digest, source_type, source, schema, profile), which is what the private
    method does today; ``mlflow.log_input`` takes the dataset itself but only logs to the fluent API's
    active run, and raymlops logs through an ``MlflowClient``.
    """
    return ds._to_mlflow_entity()
