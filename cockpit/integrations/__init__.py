"""Thin integrations of the tracker into the trainers people use.

Each submodule imports its framework and is imported on its own, so ``import
cockpit`` never needs them:

- :mod:`cockpit.integrations.lightning`: ``CockpitCallback`` for PyTorch Lightning's
  ``Trainer(callbacks=[...])``.
- :mod:`cockpit.integrations.huggingface`: ``CockpitCallback`` and ``CockpitTrainer``
  for the Hugging Face ``Trainer`` (causal language models, exact per-sample losses).

Neither forks its framework's training loop: they open one ``track()`` block around
each training step's forward and backward pass and leave the optimizer step to the
framework.
"""

__all__: list[str] = []
