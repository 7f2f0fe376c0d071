"""The tracker's behaviour: configuration checks, misuse, schedules, NaN, the log."""

import contextlib
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import cockpit
from cockpit.exceptions import (
    AbsentQuantityWarning,
    ConfigurationError,
    LogDirError,
    NonFiniteWarning,
    UnsupportedModelError,
    UsageError,
)
from cockpit.logs import LogReader

BATCH = 8


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


class WithNorm(nn.Module):
    """A non-Sequential model whose normalization layer has a nested name."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), norm)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def batch(step: int = 0, nan: bool = False):
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(BATCH, 4, generator=gen)
    if nan:
        x[0, 0] = float("nan")
    return x, torch.randint(0, 3, (BATCH,), generator=gen)


def make(tmp_path, model=None, loss_fn=None, optimizer=None, **kwargs):
    model = model if model is not None else mlp()
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs.setdefault("logdir", tmp_path)
    if "quantities" not in kwargs:
        # Every step, not the default budget's plan: these tests count records.
        kwargs.setdefault("preset", "economy")
    ck = cockpit.Cockpit(model, loss_fn, optimizer, **kwargs)
    return model, loss_fn, optimizer, ck


def train_steps(model, loss_fn, optimizer, ck, steps, start=0):
    for step in range(start, start + steps):
        x, y = batch(step)
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()


def logged_steps(run, quantity):
    return list(run.scalar(quantity).index)


def read_meta(ck):
    return json.loads((ck.run_dir / "meta.json").read_text(encoding="utf-8"))


# --- The loss function ---------------------------------------------------------------


def test_unreduced_loss_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match=r"reduction='none'.*'mean' or 'sum'"):
        make(tmp_path, loss_fn=nn.CrossEntropyLoss(reduction="none"))
    assert not any(tmp_path.iterdir()), "a refused Cockpit left a run directory"


def test_plain_function_as_loss_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="loss_fn must be a torch loss module"):
        make(tmp_path, loss_fn=nn.functional.cross_entropy)


def test_class_weights_with_mean_reduction_are_refused(tmp_path):
    weighted = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ConfigurationError, match="class weights and reduction='mean'"):
        make(tmp_path, loss_fn=weighted)


# --- The model -----------------------------------------------------------------------


def test_layernorm_with_per_sample_quantity_names_layer_type_and_quantity(tmp_path):
    model = WithNorm(nn.LayerNorm(6))
    with pytest.raises(UnsupportedModelError) as info:
        make(
            tmp_path,
            model=model,
            preset=None,
            quantities=["grad_norm", "norm_test"],
            engine="backpack",
        )
    message = str(info.value)
    assert "'body.1'" in message
    assert "LayerNorm" in message
    assert "norm_test" in message
    assert "grad_norm" not in message, "grad_norm needs no per-sample gradients"


def test_layernorm_without_per_sample_quantities_is_tracked(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path,
        model=WithNorm(nn.LayerNorm(6)),
        preset=None,
        quantities=["loss", "grad_norm"],
    )
    train_steps(model, loss_fn, optimizer, ck, 2)
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert logged_steps(run, "grad_norm") == [0, 1]
    layers = set(run.scalars.query("quantity == 'grad_norm'")["layer"].dropna())
    assert {"body.1.weight", "body.1.bias"} <= layers


def test_batchnorm_message_mentions_batchnorm(tmp_path):
    with pytest.raises(
        UnsupportedModelError,
        match=r"'body\.1' \(BatchNorm1d\).*BatchNorm couples the samples.*engine='auto'",
    ):
        make(
            tmp_path,
            model=WithNorm(nn.BatchNorm1d(6)),
            preset="economy",
            engine="backpack",
        )


def test_all_parameters_frozen_is_refused(tmp_path):
    model = mlp().requires_grad_(False)
    with pytest.raises(
        ConfigurationError, match=r"None of the 4 parameters.*requires grad"
    ):
        make(tmp_path, model=model)


def test_frozen_first_layer_is_left_out(tmp_path):
    model = mlp()
    model[0].requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    model, loss_fn, optimizer, ck = make(tmp_path, model=model, optimizer=optimizer)
    train_steps(model, loss_fn, optimizer, ck, 3)
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert run.meta["frozen"] == ["0.weight", "0.bias"]
    assert set(run.meta["parameters"]) == {"2.weight", "2.bias"}
    layers = set(run.scalars["layer"].dropna())
    assert {"2.weight", "2.bias"} <= layers
    assert not layers & {"0.weight", "0.bias"}
    assert logged_steps(run, "norm_test") == [0, 1, 2]


# --- Presets, quantities, schedules ---------------------------------------------------


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigurationError, match=r"Unknown preset 'cheap'.*economy"):
        make(tmp_path, preset="cheap")
    assert not any(tmp_path.iterdir())


def test_unknown_quantity_lists_the_valid_names(tmp_path):
    with pytest.raises(
        ConfigurationError,
        match=r"Unknown quantity 'grad_nrom'. Choose one of: .*grad_norm",
    ):
        make(tmp_path, quantities={"grad_nrom": 1})


def test_schedule_of_wrong_type_is_a_type_error(tmp_path):
    with pytest.raises(
        TypeError, match=r"Schedule for 'grad_norm' must be .*str: 'often'"
    ):
        make(tmp_path, preset=None, quantities={"grad_norm": "often"})


def test_unwritable_logdir(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a regular file")
    with pytest.raises(LogDirError, match="Cannot write the run directory"):
        make(tmp_path, logdir=not_a_dir / "runs")


def test_every_k_schedule(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities={"grad_norm": cockpit.every(3)}
    )
    train_steps(model, loss_fn, optimizer, ck, 8)
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert logged_steps(run, "grad_norm") == [0, 3, 6]
    assert set(run.scalars["step"]) == {0, 3, 6}, "untracked steps left records"


def test_log_spaced_schedule(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities={"grad_norm": cockpit.log_spaced()}
    )
    train_steps(model, loss_fn, optimizer, ck, 11)
    ck.close()
    assert logged_steps(cockpit.load(ck.run_dir), "grad_norm") == [
        0,
        1,
        2,
        3,
        5,
        6,
        7,
        10,
    ]


def hooked(model, loss_fn):
    """Modules (by name) carrying forward or backward hooks, and the loss's hooks."""
    modules = [
        name or "model"
        for name, module in model.named_modules()
        if module._forward_hooks or module._backward_hooks or module._forward_pre_hooks
    ]
    return modules, len(loss_fn._forward_hooks)


def test_untracked_steps_leave_no_hooks(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities={"norm_test": cockpit.every(2)}
    )
    seen = []
    for step in range(4):
        x, y = batch(step)
        optimizer.zero_grad()
        with ck.track():
            seen.append(hooked(model, loss_fn))
            loss_fn(model(x), y).backward()
        assert hooked(model, loss_fn) == ([], 0), f"hooks left after step {step}"
        optimizer.step()
    ck.close()
    tracked, untracked = seen[0::2], seen[1::2]
    for modules, loss_hooks in tracked:
        assert {"0", "2"} <= set(modules)
        assert loss_hooks == 1
    assert untracked == [([], 0), ([], 0)]
    assert logged_steps(cockpit.load(ck.run_dir), "norm_test") == [0, 2]


def test_alpha_tracks_the_step_after_its_own(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities={"alpha": cockpit.every(4)}
    )
    train_steps(model, loss_fn, optimizer, ck, 10)
    ck.close()
    run = cockpit.load(ck.run_dir)
    alpha = run.scalar("alpha")
    assert list(alpha.index) == [0, 4, 8]
    assert alpha.notna().all()
    # Bookkeeping is logged at every tracked step: alpha's end points 1, 5, 9 too.
    assert logged_steps(run, "batch_size") == [0, 1, 4, 5, 8, 9]


def test_plain_sgd_quantities_are_absent_for_adam(tmp_path):
    model = mlp()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.warns(AbsentQuantityWarning) as record:
        _, _, _, ck = make(
            tmp_path, model=model, optimizer=adam, quantities=["early_stopping", "cabs"]
        )
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert re.match(r"'cabs' is not tracked: .*Adam, not plain SGD", messages[0])
    assert re.match(
        r"'early_stopping' is not tracked: .*Adam, not plain SGD", messages[1]
    )
    assert set(ck.quantities) & {"early_stopping", "cabs"} == set()
    ck.close()
    absent = cockpit.load(ck.run_dir).meta["absent"]
    assert set(absent) == {"early_stopping", "cabs"}
    assert "Adam" in absent["cabs"]


def test_plain_sgd_quantities_with_momentum_name_the_reason(tmp_path):
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(AbsentQuantityWarning, match=r"'cabs' is not tracked.*momentum"):
        _, _, _, ck = make(
            tmp_path, model=model, optimizer=sgd, preset=None, quantities=["cabs"]
        )
    ck.close()


def test_plain_sgd_quantities_are_logged_for_plain_sgd(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities=["early_stopping", "cabs"]
    )
    train_steps(model, loss_fn, optimizer, ck, 3)
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert run.meta["absent"] == {}
    for name in ("early_stopping", "cabs"):
        values = run.scalar(name)
        assert list(values.index) == [0, 1, 2]
        assert values.notna().all()


# --- Misuse of track() ----------------------------------------------------------------


def test_nested_track_is_refused_and_the_next_step_works(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path)
    with pytest.raises(UsageError, match="cannot be nested"), ck.track(), ck.track():
        pass
    train_steps(model, loss_fn, optimizer, ck, 2, start=1)
    ck.close()
    assert logged_steps(cockpit.load(ck.run_dir), "loss") == [1, 2]


def test_track_after_close_is_refused(tmp_path):
    *_, ck = make(tmp_path)
    ck.close()
    with pytest.raises(UsageError, match="is closed"), ck.track():
        pass


def test_module_track_without_a_cockpit(tmp_path):
    code = "import cockpit\nwith cockpit.track():\n    pass\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "cockpit.exceptions.UsageError: cockpit.track() found no Cockpit" in (
        result.stderr
    )


def test_module_track_uses_the_latest_cockpit(tmp_path):
    model, loss_fn, optimizer, first = make(tmp_path, run_name="first")
    model, loss_fn, optimizer, second = make(tmp_path, run_name="second")
    x, y = batch()
    with cockpit.track():
        loss_fn(model(x), y).backward()
    optimizer.step()
    first.close()
    second.close()
    assert cockpit.load(first.run_dir).scalars.empty
    assert logged_steps(cockpit.load(second.run_dir), "loss") == [0]


def test_block_without_backward_is_refused(tmp_path):
    model, loss_fn, _, ck = make(tmp_path)
    x, y = batch()
    with (
        pytest.raises(UsageError, match=r"without a backward pass.*loss.backward"),
        ck.track(),
    ):
        loss_fn(model(x), y)
    ck.close()


def test_block_without_backward_is_refused_when_grads_are_zeros(tmp_path):
    """``zero_grad(set_to_none=False)`` leaves zero ``.grad``: still no backward."""
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities=["grad_norm"]
    )
    train_steps(model, loss_fn, optimizer, ck, 1)
    optimizer.zero_grad(set_to_none=False)
    x, y = batch(1)
    with pytest.raises(UsageError, match="backward"), ck.track():
        loss_fn(model(x), y)
    ck.close()


def test_two_loss_calls_in_one_block_are_refused(tmp_path):
    model, loss_fn, _, ck = make(tmp_path)
    x, y = batch()
    with (
        pytest.raises(UsageError, match=r"loss_fn was called a second time"),
        ck.track(),
    ):
        out = model(x)
        loss = loss_fn(out, y) + loss_fn(out, y)
        loss.backward()
    ck.close()


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("backpack", r"ran twice in one tracked step: a second"),
        ("auto", r"loss_fn was called a second time.*one micro-batch per optimizer"),
    ],
)
def test_two_forward_passes_in_one_block_are_refused(tmp_path, engine, message):
    """Two micro-batches in one block: a UsageError, not an error from BackPACK."""
    model, loss_fn, _, ck = make(tmp_path, engine=engine)
    (x1, y1), (x2, y2) = batch(0), batch(1)
    with (
        pytest.raises(UsageError, match=message),
        ck.track(),
    ):
        loss = loss_fn(model(x1), y1) + loss_fn(model(x2), y2)
        loss.backward()
    ck.close()


# --- log() ----------------------------------------------------------------------------


def test_log_refuses_a_tracked_name(tmp_path):
    _, _, _, ck = make(tmp_path)
    with pytest.raises(ConfigurationError, match=r"\['grad_norm'\].*'grad_norm_user'"):
        ck.log(grad_norm=1.0)
    ck.close()


def test_log_refuses_a_non_number(tmp_path):
    _, _, _, ck = make(tmp_path)
    with pytest.raises(ConfigurationError, match=r"needs numbers.*accuracy= got str"):
        ck.log(accuracy="high")
    with pytest.raises(
        ConfigurationError, match=r"needs numbers.*accuracy= got Tensor"
    ):
        ck.log(accuracy=torch.ones(2))
    ck.close()


def test_log_values_are_loaded_at_their_step(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path, preset=None, quantities=["loss"])
    train_steps(model, loss_fn, optimizer, ck, 3)
    ck.log(step=1, valid_loss=0.3)
    ck.log(accuracy=torch.tensor(0.75))
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert run.scalar("valid_loss").to_dict() == {1: 0.3}
    assert run.scalar("accuracy").to_dict() == {2: 0.75}, "default: last tracked step"


# --- Non-finite values ----------------------------------------------------------------


def test_nan_loss_is_logged_and_warned_about(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path, preset="economy")
    with pytest.warns(NonFiniteWarning, match="step 2: non-finite values") as record:
        for step in range(5):
            x, y = batch(step, nan=step == 2)
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(model(x), y)
                loss.backward()
            if torch.isfinite(loss):
                optimizer.step()
            # Written records raise their warnings at the next track(), so with a
            # flush here step 2's comes at step 4's track() (its record waits for an
            # optimizer.step() until step 3's track() starts).
            ck.writer.flush()
        ck.close()
    # Once, from the training thread, attributed to the user's track() line.
    assert len(record) == 1
    assert record[0].filename == __file__

    records = LogReader(ck.run_dir).read_new()
    # Values a record explains in its "notes" (e.g. a noise scale with G2 <= 0) are
    # expected; the NaN loss makes everything at step 2 non-finite without a note.
    unexplained = {
        r["step"]
        for r in records
        if set(r.get("nonfinite", [])) - set(r.get("notes", {}))
    }
    assert unexplained == {2}
    step_two = [r for r in records if r["step"] == 2 and "loss" in r["values"]]
    assert "loss.total" in step_two[0]["nonfinite"]

    losses = cockpit.load(ck.run_dir).scalar("loss")
    assert list(losses.index) == [0, 1, 2, 3, 4]
    assert math.isnan(losses[2])
    assert losses.drop(2).map(math.isfinite).all()


def test_nonfinite_warning_points_at_the_callers_line(tmp_path):
    model, loss_fn, _, ck = make(tmp_path, preset=None, quantities=["loss"])
    x, y = batch(nan=True)
    with ck.track():
        loss_fn(model(x), y).backward()
    with pytest.warns(NonFiniteWarning) as record:
        ck.close()
    assert record[0].filename == __file__


# --- The run's status and the log while training --------------------------------------


def test_status_running_then_finished(tmp_path):
    model, loss_fn, optimizer, ck = make(tmp_path)
    train_steps(model, loss_fn, optimizer, ck, 1)
    assert cockpit.load(ck.run_dir).meta["status"] == "running"
    ck.close()
    assert read_meta(ck)["status"] == "finished"
    ck.close()  # idempotent
    assert read_meta(ck)["status"] == "finished"


def test_exception_in_with_block_marks_run_crashed(tmp_path):
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.raises(RuntimeError, match="diverged"),
        cockpit.Cockpit(
            model, loss_fn, optimizer, logdir=tmp_path, preset="economy"
        ) as ck,
    ):
        train_steps(model, loss_fn, optimizer, ck, 2)
        raise RuntimeError("diverged")
    run = cockpit.load(ck.run_dir)
    assert run.meta["status"] == "crashed"
    assert logged_steps(run, "loss") == [0, 1]


def test_with_block_finishes(tmp_path):
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path) as ck:
        train_steps(model, loss_fn, optimizer, ck, 1)
    assert cockpit.load(ck.run_dir).meta["status"] == "finished"


def test_log_reader_returns_only_new_records(tmp_path):
    model, loss_fn, optimizer, ck = make(
        tmp_path, preset=None, quantities=["loss", "grad_norm"]
    )
    reader = cockpit.LogReader(ck.run_dir)
    train_steps(model, loss_fn, optimizer, ck, 2)
    ck.writer.flush()
    first = reader.read_new()
    assert [r["step"] for r in first] == [0, 1]
    assert all({"loss", "grad_norm"} <= set(r["values"]) for r in first)
    assert reader.read_new() == []
    train_steps(model, loss_fn, optimizer, ck, 3, start=2)
    ck.writer.flush()
    assert [r["step"] for r in reader.read_new()] == [2, 3, 4]
    ck.close()


# --- The training's random stream -----------------------------------------------------


def test_histogram_sampling_leaves_the_global_rng_alone(tmp_path):
    """Sampling draws from the tracker's generator, Dropout from the global one."""

    def run(tracked):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(4, 300), nn.Tanh(), nn.Dropout(0.5), nn.Linear(300, 3)
        )
        loss_fn = nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        ck = None
        if tracked:
            ck = cockpit.Cockpit(
                model,
                loss_fn,
                optimizer,
                logdir=tmp_path,
                preset="full",
                hist_samples=10,
            )
        torch.manual_seed(7)
        for step in range(3):
            x, y = batch(step)
            optimizer.zero_grad()
            with ck.track() if ck else contextlib.nullcontext():
                loss_fn(model(x), y).backward()
            optimizer.step()
        if ck:
            ck.close()
            hist = cockpit.load(ck.run_dir).histograms
            assert (hist["sample_size"] < hist["total"]).any(), "nothing was sampled"
        return torch.get_rng_state(), torch.rand(1)

    state, draw = run(tracked=True)
    state_ref, draw_ref = run(tracked=False)
    assert torch.equal(state, state_ref)
    assert torch.equal(draw, draw_ref)


def test_a_layer_reused_in_one_forward_pass_is_refused_by_backpack(tmp_path):
    """With BackPACK alone the stored input would be overwritten: refuse it."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            return self.layer(torch.tanh(self.layer(x)))

    model, loss_fn = Twice(), nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, preset="economy", engine="backpack"
    )
    with (
        pytest.raises(UsageError, match=r"ran twice in one tracked step"),
        ck.track(),
    ):
        loss_fn(model(torch.randn(3, 4)), torch.randn(3, 4)).backward()
    ck.close()


def test_block_inside_the_optimizer_closure_logs_the_step_taken(tmp_path):
    """Lightning runs forward and backward inside ``optimizer.step(closure)``, after
    the step's pre-hooks: the tracker must still see the step taken."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    model, loss_fn, optimizer, ck = make(
        tmp_path, model, optimizer=optimizer, preset=None, quantities=["update_size"]
    )
    expected = []
    for step in range(3):
        x, y = batch(step)

        def closure(x=x, y=y):
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(model(x), y)
                loss.backward()
            return loss

        before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
        optimizer.step(closure)
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        expected.append(torch.linalg.vector_norm(after - before).item())
    ck.close()

    logged = cockpit.load(ck.run_dir).scalar("update_size")
    assert logged.index.tolist() == [0, 1, 2]
    assert logged.tolist() == pytest.approx(expected, rel=1e-6)


def _floats(tree):
    if isinstance(tree, float):
        yield tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            if not key.endswith("edges"):  # the reader expands f32:<from>:<to>:<bins>
                yield from _floats(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _floats(value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_statistics_are_written_with_the_digits_of_the_models_precision(
    tmp_path, dtype
):
    model = mlp().to(dtype)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, preset="business")
    for step in range(3):
        x, y = batch(step)
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x.to(dtype)), y).backward()
        optimizer.step()
    ck.close()
    skip = {"time", "step_time", "tracker_time", "overhead_share"}  # host clocks
    numbers = [
        number
        for record in LogReader(ck.run_dir).read_new()
        for key, value in record["values"].items()
        if key not in skip
        for number in _floats(value)
        if math.isfinite(number) and 1e-30 < abs(number) < 1e30
    ]
    assert len(numbers) > 100
    shortest = [float(str(np.float32(n))) for n in numbers]
    if dtype == torch.float32:
        assert numbers == shortest  # float32's shortest digits, float64 states too
    else:
        assert sum(n != s for n, s in zip(numbers, shortest, strict=True)) > 50
