"""On CUDA the tracker logs the same statistics as on the CPU."""

import copy

import pytest
import torch
from torch import nn

import cockpit
from cockpit.quantities import (
    CurvatureNoise,
    GgnTopEigen,
    HessMaxEv,
    HessTrace,
    KfacBlock,
    TicDiag,
    TicTrace,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

COMPARED = (
    "loss",
    "grad_norm",
    "norm_test",
    "alpha",
    "hess_trace",
    "tic_trace",
    "hess_max_ev",
    "kfac_block.max_eigenvalue",
    "kfac_block.trace",
    "ggn_top_eigen.1",
    "curvature_noise.curvature_mean.1",
)


def deterministic_curvature() -> dict:
    """The full preset's curvature with exact (not Monte-Carlo) sources: the CPU and
    CUDA generators draw different labels, so only exact values can be compared."""
    return {
        "hess_trace": HessTrace(curvature="hessian"),
        "tic_trace": TicTrace(curvature="hessian"),
        "tic_diag": None,
        "kfac_block": KfacBlock(kind="kflr"),
        "ggn_top_eigen": GgnTopEigen(k=2, exact=True, samples=None),
        "curvature_noise": CurvatureNoise(k=2, exact=True, samples=None),
        "hess_max_ev": HessMaxEv(tol=1e-12, max_iter=200, max_error=None),
    }


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4),
    ).double()


def batches(steps=3, n=8):
    gen = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(n, 2, 5, 5, generator=gen, dtype=torch.float64),
            torch.randint(0, 4, (n,), generator=gen),
        )
        for _ in range(steps)
    ]


def train(model, device, logdir, run_name):
    model = model.to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=logdir,
        run_name=run_name,
        preset="full",
        quantities=deterministic_curvature(),
    )
    for x, y in batches():
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x.to(device)), y.to(device)).backward()
        optimizer.step()
    ck.close()
    return cockpit.load(ck.run_dir)


def values(run, quantity):
    rows = run.scalars[run.scalars["quantity"] == quantity]
    rows = rows.sort_values(["step", "layer"], na_position="first")
    return rows.reset_index(drop=True)


def assert_same_values(on_cpu, on_cuda, quantities) -> None:
    """Every step's and layer's value of ``quantities`` agrees between the runs."""
    for quantity in quantities:
        cpu, cuda = (values(run, quantity) for run in (on_cpu, on_cuda))
        assert len(cpu) > 0
        assert cpu[["step", "layer"]].equals(cuda[["step", "layer"]]), quantity
        torch.testing.assert_close(
            torch.tensor(cuda["value"].to_numpy()),
            torch.tensor(cpu["value"].to_numpy()),
            rtol=1e-6,
            atol=1e-12,
            msg=lambda m, q=quantity: f"{q}: {m}",
        )


def test_cuda_statistics_match_cpu(tmp_path):
    model = tiny_cnn()
    on_cpu = train(copy.deepcopy(model), "cpu", tmp_path, "cpu")
    on_cuda = train(model, "cuda", tmp_path, "cuda")
    assert list(on_cuda.scalar("alpha").index) == [0, 1]
    assert_same_values(on_cpu, on_cuda, COMPARED)


#: What the torch.func engine computes on the transformer: first-order statistics
#: (BackPACK, per module, replay) and exact curvature.
FUNC_COMPARED = (
    "loss",
    "grad_norm",
    "norm_test",
    "mean_gsnr",
    "hess_trace",
    "tic_diag",
    "ggn_top_eigen.1",
    "curvature_noise.curvature_mean.1",
)


def func_quantities() -> dict:
    return {
        "loss": 1,
        "grad_norm": 1,
        "norm_test": 1,
        "mean_gsnr": 1,
        "hess_trace": HessTrace(curvature="ggn_exact"),
        "tic_diag": TicDiag(curvature="ggn_exact"),
        "ggn_top_eigen": GgnTopEigen(k=2, exact=True, samples=None),
        "curvature_noise": CurvatureNoise(k=2, exact=True, samples=None),
    }


def train_transformer(device, logdir, run_name, quantities=None):
    from tests.problems import PROBLEMS

    problem = next(p for p in PROBLEMS if p.name == "transformer-ce-mean")
    model, loss_fn = problem.make()
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=logdir,
        run_name=run_name,
        preset=None,
        quantities=quantities or func_quantities(),
    )
    for step in range(3):
        x, y = problem.batch(step)
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x.to(device)), y.to(device)).backward()
        optimizer.step()
    ck.close()
    return cockpit.load(ck.run_dir)


def test_cuda_torch_func_engine_matches_cpu(tmp_path):
    on_cpu = train_transformer("cpu", tmp_path, "cpu")
    on_cuda = train_transformer("cuda", tmp_path, "cuda")
    assert on_cuda.meta["engines"]["torch.func replay"], "the replay must run too"
    assert_same_values(on_cpu, on_cuda, FUNC_COMPARED)


def test_cuda_ggn_lanczos_matches_cpu(tmp_path):
    """Matrix-free GGN eigenvalues on the transformer; the solves start from
    different random vectors on the two devices, so they must run to convergence."""

    def quantities():
        lanczos = GgnTopEigen(k=2, method="lanczos", tol=1e-12, max_iter=400)
        return {"loss": 1, "ggn_top_eigen": lanczos}

    on_cpu = train_transformer("cpu", tmp_path, "cpu", quantities())
    on_cuda = train_transformer("cuda", tmp_path, "cuda", quantities())
    assert on_cuda.scalar("ggn_top_eigen.converged").all()
    assert_same_values(on_cpu, on_cuda, ("ggn_top_eigen.1", "ggn_top_eigen.2"))


@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
@pytest.mark.parametrize("preset", ["economy", "business"])
@pytest.mark.parametrize("model_name", ["cnn", "transformer"])
def test_tracked_steps_do_not_synchronize(tmp_path, monkeypatch, preset, model_name):
    """After the first step (whose one-time engine check reads the device), a
    tracked step never waits for the GPU: CUDA's sync debug mode turns any
    synchronizing call on the training thread into an error. The writer thread,
    which copies results to the host, is replaced by a list."""
    from tests.problems import PROBLEMS

    if model_name == "cnn":
        model, loss_fn, data = tiny_cnn(), nn.CrossEntropyLoss(), batches(steps=4)
    else:
        problem = next(p for p in PROBLEMS if p.name == "transformer-ce-mean")
        model, loss_fn = problem.make()
        data = [problem.batch(step) for step in range(4)]
    model = model.cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, preset=preset)
    records = []
    monkeypatch.setattr(ck.writer, "submit", records.append)
    track_without_syncs(ck, [(x.cuda(), y.cuda()) for x, y in data])
    assert len(records) >= 3


def track_without_syncs(ck: cockpit.Cockpit, data) -> None:
    """Tracked steps on batches already on CUDA, then ``ck.close()``; from the
    second step on any synchronizing call raises (CUDA's sync debug mode)."""
    for step, (x, y) in enumerate(data):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if step >= 1 else "default")
        try:
            ck.optimizer.zero_grad()
            with ck.track():
                ck.loss_fn(ck.model(x), y).backward()
            ck.optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    ck.close()
