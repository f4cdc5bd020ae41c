"""Stopping on signals, in real processes with real signals: whatever the run is doing when
SIGINT/SIGTERM arrive, it stops, and only a second SIGINT aborts. An operator's pause and
cancel of one job run are read from its row at most once a second, and its state follows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT
from backfill import job_runs
from backfill.controls import RunRequests

# A run waiting between batches as often as it can: the runner's rate-limit and yield
# sleeps are `controls.sleep(x)` with x as small as it comes, back to back. It prints
# `ready` once the handlers are in place, keeps waiting after the stop (as a run does on its
# way out: the rate limit, the deferred retries) until its stdin closes, and prints `stopped`.
WAITING_RUN = """
import select
import sys

from app.core.logging import configure_logging
from backfill.controls import RunControls

configure_logging("json")  # as the CLI does, on stderr
controls = RunControls()
with controls.stop_on_signals():
    print("ready", flush=True)
    while not controls.should_stop():
        controls.sleep(0)
    while not select.select([sys.stdin], [], [], 0)[0]:
        controls.sleep(0)
print("stopped", flush=True)
"""


def start(code: str) -> subprocess.Popen[str]:
    """Run `code` in a new Python process of the project; return once it printed `ready`."""
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)
    return process


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Close its stdin (every signal was sent: it may leave its wait) and return its output
    once it exits; a process that never exits is killed and fails the test."""
    try:
        return process.communicate(timeout=60)  # a failure guard only, never reached
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"no exit 60 s after the stop signals; it logged:\n{stderr[-2000:]}")


@pytest.mark.parametrize("signals", [1, 20], ids=["one SIGTERM", "a burst of SIGTERMs"])
def test_sigterm_stops_a_run_that_is_waiting_between_batches(signals: int) -> None:
    # Each signal lands wherever the run happens to be: in about half the cases inside a wait,
    # with the stop event's lock held. Four runs make a miss unlikely.
    for _ in range(4):
        process = start(WAITING_RUN)
        for _ in range(signals):
            process.send_signal(signal.SIGTERM)

        stdout, stderr = finish(process)
        assert process.returncode == 0, stderr
        assert stdout.endswith("stopped\n"), stderr
        assert "backfill.stop_requested" in stderr


def test_a_second_sigint_aborts_at_once() -> None:
    for _ in range(4):  # the second one lands anywhere too, in a wait or not
        process = start(WAITING_RUN)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        assert "backfill.stop_requested" in process.stderr.readline()  # the first one was seen
        process.send_signal(signal.SIGINT)

        stdout, stderr = finish(process)
        assert process.returncode != 0
        assert "KeyboardInterrupt" in stderr
        assert "stopped" not in stdout


def test_a_runs_pause_and_cancel_are_read_at_most_once_a_second_and_its_state_follows(
    engine: Engine, tenant: int
) -> None:
    with engine.begin() as connection:
        run_id = job_runs.create(connection, tenant, "backfill", "test")
    assert job_runs.start(engine, run_id) is not None
    now = [0.0]
    requests = RunRequests(engine, run_id, every=1.0, clock=lambda: now[0])
    assert not requests.is_paused() and not requests.is_cancelled()

    job_runs.request(engine, run_id, "pause")
    assert not requests.is_paused(), "read again only once `every` has passed"
    now[0] += 1.0
    assert requests.is_paused()
    run = job_runs.get(engine, run_id)
    assert run is not None and run.state == "paused" and run.can_resume

    job_runs.request(engine, run_id, "resume")
    now[0] += 1.0
    assert not requests.is_paused()
    run = job_runs.get(engine, run_id)
    assert run is not None and run.state == "running"

    job_runs.request(engine, run_id, "cancel")
    now[0] += 1.0
    assert requests.is_cancelled()
    with pytest.raises(job_runs.NotControllable, match="already asked to cancel"):
        job_runs.request(engine, run_id, "cancel")
