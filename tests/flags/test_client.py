"""The flags client, offline from a toggle file: per-tenant evaluation, live reload, defaults."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from flags.client import TOGGLES_FILE, FlagClient, Toggle


def write_toggles(
    path: Path, read_table_tenants: list[str], *, shadow_tenants: Sequence[str] = ()
) -> None:
    definitions = json.loads(TOGGLES_FILE.read_text())
    for feature in definitions["features"]:
        if feature["name"] == Toggle.READ_TABLE:
            feature["strategies"][0]["constraints"][0]["values"] = read_table_tenants
        if feature["name"] == Toggle.SHADOW_COMPARE:
            feature["strategies"][0]["constraints"][0]["values"] = list(shadow_tenants)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(definitions))
    os.replace(temporary, path)  # atomic: the watcher never reads half a file


@pytest.fixture
def toggles(tmp_path: Path) -> Path:
    path = tmp_path / "toggles.json"
    write_toggles(path, ["3"])
    return path


@pytest.fixture
def client(toggles: Path) -> Iterator[FlagClient]:
    flag_client = FlagClient(toggles_file=toggles, watch_interval=0.1)
    yield flag_client
    flag_client.close()


def test_toggles_are_evaluated_per_tenant(client: FlagClient) -> None:
    assert client.is_enabled(Toggle.READ_TABLE, 3) is True
    assert client.is_enabled(Toggle.READ_TABLE, 4) is False
    assert client.is_enabled(Toggle.DUAL_WRITE, 4) is True
    assert client.is_enabled(Toggle.BACKFILL_PAUSE) is False
    flags = client.flags_for(3)
    assert (flags.dual_write, flags.read_table, flags.shadow_compare) == (True, True, False)


def test_a_change_to_the_file_is_picked_up_while_running(client: FlagClient, toggles: Path) -> None:
    write_toggles(toggles, ["4"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not client.is_enabled(Toggle.READ_TABLE, 4):
        time.sleep(0.1)
    assert client.is_enabled(Toggle.READ_TABLE, 4) is True
    assert client.is_enabled(Toggle.READ_TABLE, 3) is False


def test_a_file_caught_half_written_is_read_again_until_it_is_whole(
    client: FlagClient, toggles: Path
) -> None:
    # An editor that truncates then writes: the watcher may see the half file, and the
    # finished file may carry the same mtime (coarse timestamps): it must try again.
    toggles.write_text('{"version": 1, "features": [')
    stamp = toggles.stat().st_mtime_ns
    time.sleep(0.5)  # the watcher (every 0.1 s) meets the half-written file
    write_toggles(toggles, ["4"])
    os.utime(toggles, ns=(stamp, stamp))  # the finished file, same mtime as the half one
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not client.is_enabled(Toggle.READ_TABLE, 4):
        time.sleep(0.1)
    assert client.is_enabled(Toggle.READ_TABLE, 4) is True


def test_a_toggle_missing_from_the_file_falls_back_to_its_safe_default(tmp_path: Path) -> None:
    path = tmp_path / "toggles.json"
    path.write_text(json.dumps({"version": 1, "features": []}))
    flag_client = FlagClient(toggles_file=path)
    try:
        assert flag_client.is_enabled(Toggle.DUAL_WRITE, 1) is True
        assert flag_client.is_enabled(Toggle.READ_TABLE, 1) is False
    finally:
        flag_client.close()


def test_an_unreachable_server_answers_defaults_at_once(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    port = listener.getsockname()[1]
    try:
        flag_client = FlagClient(url=f"http://127.0.0.1:{port}/api", api_token="x")
        # The server never answers, so the client cannot have finished initialising: the
        # constructor returned without waiting for it, and defaults answer meanwhile.
        assert flag_client._client.is_initialized is False
        flags = flag_client.flags_for(7)
        flag_client.close()
    finally:
        listener.close()
    assert (flags.dual_write, flags.read_table, flags.shadow_compare) == (True, False, False)
