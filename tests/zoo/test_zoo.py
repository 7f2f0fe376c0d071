"""cockpit.zoo: the shared models' shapes and sizes, the data helpers, the layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from cockpit.zoo import models
from cockpit.zoo.digits import N_VALID, digits, train_valid
from cockpit.zoo.text import ALPHABET, load_text, windows

ROOT = Path(__file__).resolve().parents[2]

# (builder, input shape of one sample, parameters): the numbers the docstrings quote.
IMAGE_MODELS = {
    "digits_mlp": (models.digits_mlp, (1, 8, 8), 17_226),
    "digits_cnn": (models.digits_cnn, (1, 8, 8), 13_706),
    "resnet_digits": (models.resnet_digits, (1, 8, 8), 19_722),
    "cnn_3c3d": (models.cnn_3c3d, (3, 32, 32), 895_210),
}


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_model_shapes_and_sizes(name):
    build, shape, parameters = IMAGE_MODELS[name]
    model = build()
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model(torch.zeros(3, *shape)).shape == (3, 10)


def test_same_seed_same_weights():
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        weights.append(models.resnet_digits().state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_char_transformer_ties_its_output_to_the_embedding():
    model = models.CharTransformer(len(ALPHABET))
    assert model.head.weight is model.tok.weight
    assert sum(p.numel() for p in model.parameters()) == 106_304
    tokens = torch.randint(0, len(ALPHABET), (2, 5))
    logits = model(tokens)
    assert logits.shape == (2, 5, len(ALPHABET))
    assert models.class_axis_second(logits).shape == (2, len(ALPHABET), 5)


def test_digits_order_does_not_follow_the_global_seed():
    torch.manual_seed(1)
    x, y = digits()
    torch.manual_seed(2)
    x_train, y_train, x_valid, y_valid = train_valid()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (len(y_train), len(y_valid)) == (1797 - N_VALID, N_VALID)
    assert torch.equal(torch.cat([x_train, x_valid]), x)
    assert torch.equal(torch.cat([y_train, y_valid]), y)


def test_text_windows_target_the_next_character():
    text = load_text(500)
    assert text.shape == (500,) and int(text.max()) < len(ALPHABET)
    inputs, targets = next(windows(text, batch_size=4, context=8, seed=0))
    assert inputs.shape == targets.shape == (4, 8)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def test_the_tracker_core_does_not_import_the_zoo():
    importing = []
    for path in (ROOT / "cockpit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.startswith("cockpit.zoo") for name in names):
                importing.append(str(path.relative_to(ROOT)))
    assert importing == []
