"""The local toggle file lives in DATA_DIR, copied from the tracked defaults on first use:
flipping a flag never edits `flags/toggles.json`, which the tests and a fresh clone rely on."""

from __future__ import annotations

from pathlib import Path

from app.core.settings import Settings
from flags import toggle_file
from flags.client import FlagClient, Toggle


def test_the_default_toggle_file_is_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).flags_file == tmp_path / "toggles.json"
    assert Settings(data_dir=tmp_path, flags_file=tmp_path / "x.json").flags_file == (
        tmp_path / "x.json"
    )


def test_a_flip_writes_the_local_copy_and_never_the_tracked_defaults(tmp_path: Path) -> None:
    tracked = toggle_file.DEFAULTS.read_bytes()
    local = Settings(data_dir=tmp_path / "data").flags_file
    store = toggle_file.FileStore(local)
    assert store.tenants(Toggle.READ_TABLE) == [], "a new copy of the defaults"
    store.set_tenants(Toggle.READ_TABLE, add=[7])
    assert store.tenants(Toggle.READ_TABLE) == [7]
    assert toggle_file.DEFAULTS.read_bytes() == tracked
    client = FlagClient(toggles_file=local, watch_interval=0.1)
    try:
        assert client.flags_for(7).read_table
    finally:
        client.close()


def test_a_client_on_a_missing_file_starts_from_the_defaults(tmp_path: Path) -> None:
    client = FlagClient(toggles_file=tmp_path / "new" / "toggles.json", watch_interval=0.1)
    try:
        assert not client.flags_for(1).read_table
        assert client.flags_for(1).dual_write
    finally:
        client.close()
