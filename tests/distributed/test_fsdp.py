"""FSDP (``fully_shard``): the reduction-only quantities equal one process's, the rest
are absent with the reason.

A float64 MLP whose output dimensions (5 and 2) no world size here divides, so its
``Shard(0)`` shards are uneven (5 rows: 3 + 2 on 2 ranks, 2 + 2 + 1 on 3; 2 rows:
1 + 1 + 0 on 3, an empty shard), trains 3 steps of plain SGD on a global batch of 13
samples split unequally over 2 and 3 gloo processes on 127.0.0.1 (each rank scales
its mean loss by ``n_r W / N`` so that FSDP's averaged ``.grad`` is the global
batch's gradient). Its log must equal, up to float rounding, one process's log of
the same unsharded MLP on the whole batch, and brute force from that process:
the norms of ``.grad``, of the parameters, of their distance from the start and of
each step, and the mean loss; so must 2 micro-batches per rank, and the first
step's gradient when each block clips it. Every rank writes into its own
directory; only rank 0's may exist. The same spawned ranks check what is absent
(with the default and with ``preset="economy"``), the bytes sent per step, the
non-finite gradient norm of ranks whose losses are not scaled to their shares,
and the refusals of shardings the tracker cannot read.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import cockpit
from cockpit._pieces import Piece, _AveragedGrads
from cockpit._setup import default_tracking
from cockpit._sharded import SHARDED_REASON
from cockpit.exceptions import AbsentQuantityWarning, ConfigurationError
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities import PRESETS, REGISTRY
from tests.distributed._runs import records
from tests.distributed.test_split_steps import _assert_same, _free_port
from tests.scripts import run_python, torchrun

STEPS = 3
BATCH = 13
NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]
#: The quantities FSDP keeps: sums over samples and norms of sharded vectors.
SHARDABLE = {
    "loss",
    "input_scale",
    "grad_norm",
    "param_norm",
    "distance",
    "update_size",
}
#: The gradient norm that one run clips to inside its blocks.
CLIP = 1e-3
#: Timing, not statistics.
UNCOMPARED = {"tracker_time", "step_time"}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def _batches():
    data = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x = torch.randn(BATCH, 4, generator=data, dtype=torch.float64)
        yield x, torch.randint(0, 2, (BATCH,), generator=data)


def _sharded_mlp() -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = _mlp()
    for layer in (model[0], model[2]):
        fully_shard(layer)
    return fully_shard(model)


def _tracked(model: nn.Module, logdir: Path, **options):
    """The loss, plain SGD and the Cockpit (run ``run`` in ``logdir``) of ``model``."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=logdir, run_name="run", **options
    )
    return loss_fn, optimizer, ck


def _train_sharded(
    logdir: Path,
    rank: int,
    world: int,
    scale: bool,
    pieces: int = 1,
    clip: float | None = None,
    **options,
):
    """Train the sharded MLP on this rank's shard; the bytes sent per step.

    ``pieces``: micro-batches per step, all but the last without FSDP's
    reduce-scatter (``set_requires_gradient_sync(False)``). ``clip``: clip the
    gradient to this norm inside each step's block, after ``backward()``.
    """
    model = _sharded_mlp()
    loss_fn, optimizer, ck = _tracked(
        model, logdir, accumulation_steps=pieces, **options
    )
    sent = []
    for x, y in _batches():
        shard = torch.tensor_split(torch.arange(BATCH), world)[rank]
        before = ck.ranks.bytes_sent
        optimizer.zero_grad()
        for i, part in enumerate(torch.tensor_split(shard, pieces)):
            model.set_requires_gradient_sync(i == pieces - 1)
            with ck.track():
                loss = loss_fn(model(x[part]), y[part])
                # FSDP averages .grad over the ranks; n W / N makes it the global
                # batch's mean gradient with unequal pieces (scale=False: it is not).
                (loss * (len(part) * world / BATCH if scale else 1.0)).backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        sent.append(ck.ranks.bytes_sent - before)
    ck.close()
    return sent


def _refusals(world: int) -> dict[str, str]:
    """The errors for shardings the tracker cannot read, by case.

    ``partly``: the root's own parameters left whole; ``hsdp``: a 2-D mesh
    (1 replica x W shards); ``group``: a ``process_group`` other than the mesh's.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    hsdp = init_device_mesh("cpu", (1, world), mesh_dim_names=("replicate", "shard"))
    cases = {
        "partly": (nn.Sequential(fully_shard(_mlp()), nn.Linear(2, 2).double()), None),
        "hsdp": (fully_shard(_mlp(), mesh=hsdp), None),
        "group": (fully_shard(_mlp()), dist.new_group(list(range(world)))),
    }
    found = {}
    for case, (model, group) in cases.items():
        try:
            cockpit.Cockpit(
                model, nn.CrossEntropyLoss(), None, process_group=group, logdir="-"
            )
        except ConfigurationError as error:
            found[case] = str(error)
    return found


def rank_main(rank: int, world: int, port: int, out: str) -> None:
    """A spawned rank: the default, economy, accumulated, clipped and unscaled runs,
    and the refusals."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        root = Path(out)
        summary: dict = {
            "sent": _train_sharded(root / f"default{rank}", rank, world, True)
        }
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _train_sharded(root / f"economy{rank}", rank, world, True, preset="economy")
        summary["warned"] = sorted(
            str(w.message).split("'")[1]
            for w in caught
            if issubclass(w.category, AbsentQuantityWarning)
        )
        _train_sharded(root / f"accumulated{rank}", rank, world, True, pieces=2)
        _train_sharded(root / f"clipped{rank}", rank, world, True, clip=CLIP)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the non-finite norms' warnings
            _train_sharded(root / f"unscaled{rank}", rank, world, False)
        summary["refused"] = _refusals(world)
        (root / f"summary{rank}.json").write_text(json.dumps(summary))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _whole(logdir: Path) -> dict[int, dict]:
    """One process, the unsharded MLP, the whole batch; brute force by step."""
    model = _mlp()
    loss_fn, optimizer, ck = _tracked(model, logdir, quantities=sorted(SHARDABLE))
    start = [p.detach().clone() for p in model.parameters()]
    brute = {}
    for step, (x, y) in enumerate(_batches()):
        optimizer.zero_grad()
        with ck.track():
            loss = loss_fn(model(x), y)
            loss.backward()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.step()
        after = [p.detach() for p in model.parameters()]
        norms = {
            "grad_norm": [p.grad for p in model.parameters()],
            "param_norm": before,
            "distance": [b - s for b, s in zip(before, start, strict=True)],
            "update_size": [a - b for a, b in zip(after, before, strict=True)],
        }
        brute[step] = {"loss": float(loss.detach())} | {
            key: [float(torch.linalg.vector_norm(t)) for t in tensors]
            for key, tensors in norms.items()
        }
    ck.close()
    return brute


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("whole")
    return logdir / "run", _whole(logdir)


@pytest.fixture(scope="module", params=[2, 3])
def sharded(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"fsdp{world}")
    mp.spawn(rank_main, args=(world, _free_port(), str(out)), nprocs=world)
    summaries = [
        json.loads((out / f"summary{r}.json").read_text()) for r in range(world)
    ]
    return world, out, summaries


def _values(run_dir: Path) -> dict[int, dict]:
    return {
        step: {k: v for k, v in values.items() if k not in UNCOMPARED}
        for step, values in records(run_dir).items()
    }


def test_the_reduction_only_quantities_equal_one_process(sharded, whole):
    _, out, _ = sharded
    whole_dir, brute = whole
    got = _values(out / "default0" / "run")
    _assert_same(got, _values(whole_dir))
    for step, expected in brute.items():
        assert math.isclose(got[step]["loss"][TOTAL], expected["loss"], rel_tol=1e-12)
        for key in ("grad_norm", "param_norm", "distance", "update_size"):
            per_layer = got[step][key][PER_LAYER]
            assert list(per_layer) == NAMES  # the original parameter names
            logged = [per_layer[name] for name in NAMES]
            assert logged == pytest.approx(expected[key], rel=1e-12), (step, key)
            total = math.sqrt(sum(v**2 for v in expected[key]))
            assert got[step][key][TOTAL] == pytest.approx(total, rel=1e-12)


def test_accumulated_micro_batches_equal_one_process(sharded, whole):
    _, out, _ = sharded
    got = _values(out / "accumulated0" / "run")
    _assert_same(got, _values(whole[0]))
    meta = json.loads((out / "accumulated0" / "run" / "meta.json").read_text())
    assert (meta["accumulation_steps"], meta["global_batch_size"]) == (2, BATCH)


def test_clipping_inside_the_block_does_not_reach_the_statistics(sharded, whole):
    """The first step's gradient is the unclipped one; the step taken was clipped."""
    _, out, _ = sharded
    got, expected = _values(out / "clipped0" / "run")[0], _values(whole[0])[0]
    _assert_same(got["grad_norm"], expected["grad_norm"])
    assert got["grad_norm"][TOTAL] > 10 * CLIP
    # clip_grad_norm_ scales by CLIP / (norm + 1e-6): 1e-5 relative below CLIP.
    assert got["update_size"][TOTAL] == pytest.approx(0.1 * CLIP, rel=1e-4)


def test_the_rest_is_absent_with_the_reason(sharded):
    _, out, summaries = sharded
    meta = json.loads((out / "default0" / "run" / "meta.json").read_text())
    assert meta["preset"] == "full"
    assert set(meta["quantities"]) == SHARDABLE
    assert meta["absent"] == dict.fromkeys(
        set(PRESETS["full"]) - SHARDABLE, SHARDED_REASON
    )
    # Asked for by name (a preset), each absent one is warned about too.
    economy = json.loads((out / "economy0" / "run" / "meta.json").read_text())
    dropped = set(PRESETS["economy"]) - SHARDABLE
    assert economy["absent"] == dict.fromkeys(dropped, SHARDED_REASON)
    assert all(summary["warned"] == sorted(dropped) for summary in summaries)
    for values in records(out / "economy0" / "run").values():
        assert set(values) & set(REGISTRY) == set(PRESETS["economy"]) & SHARDABLE


def test_rank_0_writes_one_log_with_the_sharding(sharded):
    world, out, _ = sharded
    for rank in range(1, world):
        assert not (out / f"default{rank}").exists()
    meta = json.loads((out / "default0" / "run" / "meta.json").read_text())
    assert (meta["world_size"], meta["global_batch_size"]) == (world, BATCH)
    assert meta["parameters"] == {
        "0.weight": [5, 4],
        "0.bias": [5],
        "2.weight": [2, 5],
        "2.bias": [2],
    }
    rows = {2: {5: [3, 2], 2: [1, 1]}, 3: {5: [2, 2, 1], 2: [1, 1, 0]}}[world]
    assert meta["sharding"] == {
        "api": "fully_shard",
        "gradient_divide_factor": float(world),
        "placements": dict.fromkeys(NAMES, "Shard(dim=0)"),
        "elements_per_rank": {
            "0.weight": [4 * r for r in rows[5]],
            "0.bias": rows[5],
            "2.weight": [5 * r for r in rows[2]],
            "2.bias": rows[2],
        },
    }


def test_a_few_small_tensors_per_step(sharded):
    """What a rank sends per step, whatever its shard: no parameter or gradient."""
    _, _, summaries = sharded
    layers = len(NAMES)
    expected = 8 * (
        4  # header: sample count, pieces' size, two flags (int64)
        + 1
        + 2  # MAX: the input's largest |x|, the range of k
        + 3  # the per-sample losses' moments (count, mean, M2)
        + 3  # SUM: the input's count, sum and sum of squares
        + 3 * layers  # SUM: squared shard norms of grads, params, params - initial
        + layers  # after optimizer.step(): squared shard norms of the step
    )
    for summary in summaries:
        assert summary["sent"] == [expected] * STEPS


def test_unscaled_unequal_shards_log_a_nonfinite_gradient_norm(sharded):
    """FSDP's average of unequal shards is not the global batch's gradient."""
    _, out, _ = sharded
    for values in records(out / "unscaled0" / "run").values():
        assert values["grad_norm"][TOTAL] is None  # logged as null
        assert set(values["grad_norm"][PER_LAYER].values()) == {None}
        assert values["param_norm"][TOTAL] is not None


def test_shardings_the_tracker_cannot_read_are_refused(sharded):
    _, _, summaries = sharded
    for refused in (summary["refused"] for summary in summaries):
        assert refused["partly"].startswith(
            "Parameters ['1.weight', '1.bias'] of the fully_shard model are not sharded"
        )
        assert "Apply fully_shard to the root module" in refused["partly"]
        assert "got meshes of dimensions [2]" in refused["hsdp"]
        assert "process_group must be the fully_shard model's own" in refused["group"]


class FullyShardedDataParallel(nn.Module):
    """A stand-in for FSDP1's wrapper: on a CPU-only torch 2.14 the real one refuses
    to be built ("FSDP needs a non-CPU accelerator device")."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self._fsdp_wrapped_module = module


def test_fsdp1_is_refused_naming_fully_shard(tmp_path):
    model = FullyShardedDataParallel(_mlp())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match=r"FSDP1.*fully_shard \(FSDP2\)"):
        cockpit.Cockpit(model, nn.CrossEntropyLoss(), optimizer, logdir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_torchrun_example_writes_one_run_of_the_shardable_quantities(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "fsdp_digits.py"
    args = [str(example), "--steps", "3", "--logdir", str(tmp_path)]
    run_python([*torchrun(2), *args], cwd=tmp_path, timeout=300)
    assert [p.name for p in tmp_path.iterdir()] == ["fsdp_digits"]
    meta = json.loads((tmp_path / "fsdp_digits" / "meta.json").read_text())
    assert (meta["status"], meta["world_size"], meta["global_batch_size"]) == (
        "finished",
        2,
        64,
    )
    assert set(meta["quantities"]) == SHARDABLE
    steps = records(tmp_path / "fsdp_digits")
    assert sorted(steps) == [0, 1, 2]
    assert all(set(v) & set(REGISTRY) == SHARDABLE for v in steps.values())


def _shard_piece(size: int, c: float) -> Piece:
    grads = {"w": torch.tensor([2.0, -4.0], dtype=torch.float64)}
    return Piece(
        {"grads": grads}, {}, size, 0.0, [torch.tensor(c, dtype=torch.float64)]
    )


def test_the_reduced_shard_is_divided_by_k_equal_up_to_rounding():
    """``g = grad F / (N s)`` with ``s = c / n``, the same on every piece and rank.

    Unequal pieces of 7 and 6 of N = 13 samples on W = 2 ranks, scaled by
    ``n W / N``: ``c / n`` is ``2 / 13`` on both up to rounding, so ``k = 1``.
    """
    pieces = [_shard_piece(n, n * 2 / 13) for n in (7, 6)]
    sharded = _AveragedGrads.of_shards(pieces, 13, 2.0, mean=True)
    high, negated_low = sharded.scale_range()
    got = sharded.mean_gradient(high, negated_low)["w"]
    torch.testing.assert_close(got, torch.tensor([2.0, -4.0]).double())
    # A sum-reduced loss needs no scaling: g = grad F / (N c).
    summed = _AveragedGrads.of_shards([_shard_piece(7, 2.0)], 13, 2.0, mean=False)
    got = summed.mean_gradient(*summed.scale_range())["w"]
    torch.testing.assert_close(got, torch.tensor([2.0, -4.0]).double() / 13)
    # A rank that scaled by n_r / N alone (k twice as large): NaN, not a wrong g.
    other = torch.tensor(7 / 13 / 7, dtype=torch.float64)
    assert torch.isnan(sharded.mean_gradient(high, -other)["w"]).all()


def test_the_default_under_fsdp_is_full_without_a_budget():
    assert default_tracking(None, None, None, ranks=2, sharded=True) == ("full", None)
    assert default_tracking("economy", None, None, 2, sharded=True) == ("economy", None)
    assert default_tracking(None, ["loss"], None, 2, sharded=True) == (None, None)
    with pytest.raises(ConfigurationError, match="across 2 processes"):
        default_tracking(None, None, 0.05, ranks=2, sharded=True)
