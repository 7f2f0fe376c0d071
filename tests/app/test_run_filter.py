import pytest

from cockpit.app import callbacks
from cockpit.app.run_filter import RunFilter
from cockpit.app.store import RunStore
from cockpit.logs import RunWriter

META = {
    "config": {
        "lr": 0.1,
        "optimizer": "adam",
        "nesterov": True,
        "sched": {"kind": "cos"},
    }
}


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("", "sweep/lr-0.1-seed-3", True),
        (None, "any", True),
        ("seed-3", "sweep/lr-0.1-seed-3", True),
        ("SEED-3", "sweep/lr-0.1-seed-3", True),
        ("seed-4", "sweep/lr-0.1-seed-3", False),
        ("lr=0.1", "x", True),
        ("lr=1e-1", "x", True),
        ("lr=0.10", "x", True),
        ("lr=0.2", "x", False),
        ("lr=fast", "x", False),
        ("optimizer=adam", "x", True),
        ("optimizer=sgd", "x", False),
        ("nesterov=true", "x", True),
        ("sched.kind=cos", "x", True),
        ("sched.kind=step", "x", False),
        ("momentum=0.9", "x", False),
        ("lr=0.1 seed-3", "lr-0.1-seed-3", True),
        ("lr=0.1 seed-4", "lr-0.1-seed-3", False),
        ("=0.1", "lr=0.1-run", True),  # no key: a part of the name
        ("=0.1", "lr-0.1", False),
    ],
)
def test_filter_by_name_words_and_config_values(text, name, expected):
    assert RunFilter.parse(text).matches(name, META) is expected


def test_runs_without_config_match_only_name_words():
    assert RunFilter.parse("run").matches("my-run", {})
    assert not RunFilter.parse("lr=0.1").matches("my-run", {"config": "broken"})


def test_run_list_filters_a_sweep_and_keeps_the_selection(tmp_path):
    for lr in (0.1, 0.01):
        for seed in range(3):
            name = f"lr{lr}-seed{seed}"
            meta = {"run_name": name, "config": {"lr": lr, "seed": seed}}
            RunWriter(tmp_path / name, meta).close()
    store = RunStore(tmp_path)
    store.poll(shown=[])
    options, count = callbacks.run_options(store, ["lr0.1-seed0"], "lr=0.01 seed=2")
    assert [o["value"] for o in options] == ["lr0.1-seed0", "lr0.01-seed2"]
    assert count == "1 of 6 runs match"
    options, count = callbacks.run_options(store, [], "seed1")
    assert sorted(o["value"] for o in options) == ["lr0.01-seed1", "lr0.1-seed1"]
    assert count == "2 of 6 runs match"
