"""One command owns a store: claim_store, the owner's writer process, concurrent creates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from robolearn.data import EpisodeStore, EpisodeWriter, StoreError, claim_store
from robolearn.data.locks import owner_info, owner_lock_path
from tests.support import ACTION_DIM, OBS_DIM, ROOT, make_episode

SPEC = {"obs_dim": OBS_DIM, "action_dim": ACTION_DIM}


def _worker(*args, stdin=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.robolearn.data.owner_worker", *map(str, args)], cwd=ROOT,
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _run(*args, timeout=60):
    proc = _worker(*args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return out.strip()


@pytest.fixture
def held(store_path):
    """Another process that claims the store (creating it) and holds it until released."""
    proc = _worker("hold", store_path, stdin=subprocess.PIPE)
    line = proc.stdout.readline().strip()
    assert line == "ok claimed", proc.stderr.read()[-2000:]
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_claim_creates_and_releases(store_path):
    with claim_store(store_path, create=SPEC) as claim:
        assert claim.created and store_path.is_dir()
        assert owner_info(store_path)["pid"] == os.getpid()
        with claim.open("a") as s:  # this process may append
            s.add_episode(make_episode(0), task="t")
    assert owner_info(store_path) is None and not owner_lock_path(store_path).exists()
    with claim_store(store_path, create=SPEC) as claim:  # an existing store: opened, not made
        assert not claim.created
        with claim.open("r") as r:
            assert len(r) == 1


def test_a_second_command_is_refused_naming_the_owner(store_path, held):
    out = _run("collect", store_path, 3, 0)
    assert out.startswith("refused StoreError") and f"pid {held.pid}" in out
    assert "owner_worker.py hold" in out  # the owner's command line
    with pytest.raises(StoreError, match=f"in use by another command: pid {held.pid}"):
        with claim_store(store_path, create=SPEC):
            pass


def test_other_processes_cannot_append_or_overwrite_but_can_read(store_path, held):
    out = _run("append", store_path)
    assert out.startswith("refused") and f"owned by another command, pid {held.pid}" in out
    with pytest.raises(StoreError, match="owned by another command"):
        EpisodeStore.open(store_path, mode="a")
    with pytest.raises(StoreError, match="owned by another command"):
        EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM, overwrite=True)
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 0


def test_the_owner_hands_the_store_to_its_writer_process(store_path):
    with claim_store(store_path, create=SPEC) as claim:
        with EpisodeWriter(store_path, claim=claim) as w:
            w.add_episode(make_episode(0), task="t")
        with EpisodeWriter(store_path) as w:  # made in the owning process: allowed too
            w.add_episode(make_episode(1), task="t")
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 2


def test_two_collects_on_one_store_record_each_episode_once(store_path):
    # the second waits for the first, then plans from what the first committed
    a = _worker("collect", store_path, 6, 60)
    b = _worker("collect", store_path, 6, 60)
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in (a, b))
    assert outs == ["ok collected 0", "ok collected 6"], outs
    with EpisodeStore.open(store_path) as r:
        assert sorted(int(s) for s in r.meta("seed")) == list(range(6))


def test_claim_checks_an_existing_store_matches(store_path):
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM).close()
    with pytest.raises(StoreError, match="other per-step keys.*obs"):
        with claim_store(store_path, create={"obs_dim": 7, "action_dim": ACTION_DIM}):
            pass
    with pytest.raises(FileNotFoundError, match="pass create="):
        with claim_store(store_path.parent / "nope.zarr"):
            pass
    with claim_store(store_path), pytest.raises(StoreError, match="already claimed by this"):
        with claim_store(store_path):
            pass


def test_overwrite_waits_for_no_writer(store_path):
    s = EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM)
    s.add_episode(make_episode(0), task="t")
    with pytest.raises(StoreError, match="open for writing by another process"):
        EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM, overwrite=True)
    s.close()
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 1
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM, overwrite=True).close()
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 0
    assert not list(store_path.parent.glob(".*replaced*"))


def test_create_removes_only_dead_processes_temp_dirs(store_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    live = store_path.parent / f".{store_path.name}.creating-{os.getpid()}-abcd1234"
    stale = store_path.parent / f".{store_path.name}.creating-{dead_pid}"  # old name format
    stale_build = store_path.parent / f".{store_path.name}.building-{dead_pid}-00000000"
    for d in (live, stale, stale_build):
        (d / "data").mkdir(parents=True)
    EpisodeStore.create(store_path, OBS_DIM, ACTION_DIM).close()
    assert live.exists() and not stale.exists() and not stale_build.exists()


def test_concurrent_creates_give_one_store_and_a_clear_refusal(tmp_path):
    for round_ in range(3):
        path, go = tmp_path / f"s{round_}.zarr", tmp_path / f"go{round_}"
        procs = [_worker("create", path, go) for _ in range(2)]
        go.touch()
        outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
        assert outs[0] == "ok created", outs
        # refused either before building (it exists) or at the rename (another process won)
        assert outs[1].startswith("refused FileExistsError"), outs
        assert "already exists" in outs[1] or "created by another process" in outs[1], outs
        with EpisodeStore.open(path, mode="a") as s:  # one good store, no corruption
            s.add_episode(make_episode(0), task="t")
        assert not list(tmp_path.glob(f".s{round_}.zarr.*"))


def test_claim_a_path_to_build_a_store_in(tmp_path, store_path):
    # an import holds the path while it builds the store under a temporary name
    from robolearn.data import build_store

    with claim_store(store_path, missing_ok=True) as claim:
        assert not claim.created and not store_path.exists()
        go = tmp_path / "go"
        go.touch()
        out = _run("create", store_path, go)  # another process may not create it meanwhile
        assert out.startswith("refused StoreError") and "owned by another command" in out
        with build_store(store_path, OBS_DIM, ACTION_DIM) as s:
            s.add_episode(make_episode(0), task="t")
    with EpisodeStore.open(store_path) as r:
        assert len(r) == 1
