"""On CUDA the batch replay's loop route stacks its rows before reducing them.

The CPU reduces each row as it comes; CUDA stacks them (``batch_replay.loop_rows``).
The tiny BatchNorm CNN takes the loop route (``LOOP_WIDTH`` set to 0) with a device
bound of 3 rows, so its 8 samples come in blocks of 3, 3 and 2: the values logged
equal the CPU's, and a tracked step never waits for the GPU.
"""

import pytest
import torch
from torch import nn

import cockpit
from cockpit.engines import batch_replay, layer_stats
from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.quantities import HessTrace
from tests.gpu.test_cuda import assert_same_values, batches, track_without_syncs
from tests.quantities.tracking import make_cockpit

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

COMPARED = ("loss", "grad_norm", "norm_test", "mean_gsnr", "alpha", "hess_trace")


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4),
    ).double()


def tracked(device: str, logdir, run_name: str) -> cockpit.Cockpit:
    """The tiny CNN on ``device``, tracking :data:`COMPARED` and a histogram."""
    quantities = {name: 1 for name in COMPARED if name != "hess_trace"}
    quantities.update(grad_hist_1d=1, hess_trace=HessTrace(curvature="ggn_exact"))
    model = bn_cnn().to(device)
    return make_cockpit(
        model, nn.CrossEntropyLoss(), logdir, quantities, run_name=run_name
    )


@pytest.fixture
def block_sizes(monkeypatch) -> dict[str, list[int]]:
    """Device type -> the rows of each block ``ChunkReducer.add`` got; the loop
    route forced, with a device bound of 3 rows of the tiny CNN."""
    monkeypatch.setattr(batch_replay, "LOOP_WIDTH", 0)
    width = sum(p.numel() for p in bn_cnn().parameters())
    monkeypatch.setattr(layer_stats, "DEVICE_CHUNK_ELEMENTS", 3 * width)
    sizes: dict[str, list[int]] = {}
    add = ChunkReducer.add

    def counted(self, block, reused=False):
        sizes.setdefault(block.device.type, []).append(block.shape[0])
        return add(self, block, reused)

    monkeypatch.setattr(ChunkReducer, "add", counted)
    return sizes


def test_cuda_stacked_rows_match_the_cpu_rows_one_at_a_time(tmp_path, block_sizes):
    runs = {}
    for device in ("cpu", "cuda"):
        ck = tracked(device, tmp_path, device)
        for x, y in batches():
            ck.optimizer.zero_grad()
            with ck.track():
                ck.loss_fn(ck.model(x.to(device)), y.to(device)).backward()
            ck.optimizer.step()
        ck.close()
        runs[device] = cockpit.load(ck.run_dir)
    assert set(block_sizes["cpu"]) == {1}
    assert sorted(set(block_sizes["cuda"])) == [2, 3]  # 8 samples: 3 + 3 + 2
    assert_same_values(runs["cpu"], runs["cuda"], COMPARED)


@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
def test_cuda_stacked_rows_do_not_synchronize(tmp_path, monkeypatch, block_sizes):
    ck = tracked("cuda", tmp_path, "run")
    records = []
    monkeypatch.setattr(ck.writer, "submit", records.append)  # no host copies
    track_without_syncs(ck, [(x.cuda(), y.cuda()) for x, y in batches(steps=4)])
    assert sorted(set(block_sizes["cuda"])) == [2, 3]
    assert len(records) >= 3
