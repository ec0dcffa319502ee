"""The online-store table is the only place choosing a backend: one entry per config type, each an OnlineStore,
imported only when a store of that type is opened."""

import subprocess
import sys
import typing

import pytest

from raymlops.config.features import OnlineStoreConfig
from raymlops.features.online import ONLINE_STORES, OnlineStore, OnlineStoreError, online_store_class, open_online_store

pytestmark = pytest.mark.unit


def config_types() -> set[str]:
    """The ``type`` literals of every online-store config model in raymlops.config."""
    union = typing.get_args(OnlineStoreConfig)[0]  # Annotated[Union[...], discriminator]
    return {t for model in typing.get_args(union) for t in typing.get_args(model.model_fields["type"].annotation)}


def test_every_online_store_config_type_has_a_backend_and_vice_versa():
    assert config_types() == {"sqlite", "redis"}  # (the introspection above sees the config's types)
    assert set(ONLINE_STORES) == config_types()


@pytest.mark.parametrize("kind", sorted(ONLINE_STORES))
def test_each_backend_is_an_online_store(kind):
    cls = online_store_class(kind)
    assert issubclass(cls, OnlineStore) and not getattr(cls, "__abstractmethods__", None)


def test_an_unknown_type_names_the_known_ones(tmp_path):
    class Cfg:
        type = "dynamo"

    with pytest.raises(OnlineStoreError, match="unknown online store type 'dynamo'; expected 'sqlite' or 'redis'"):
        open_online_store(Cfg(), str(tmp_path), "ns")


def test_backends_are_imported_only_when_opened(tmp_path):
    code = (
        "import sys, raymlops.features.online as o; "
        "assert not [m for m in sys.modules if m.startswith('raymlops.features.online.') and m != "
        "'raymlops.features.online.base'], sorted(sys.modules); "
        f"o.open_online_store(None, {str(tmp_path)!r}, 'ns').close(); "
        "assert 'raymlops.features.online.sqlite' in sys.modules and 'raymlops.features.online.redis' not in "
        "sys.modules and 'redis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
