"""cockpit.zoo: the small models, data and training loop of the examples and the demo.

Installed as ``cockpit.zoo`` from the top-level ``zoo/`` folder. The examples, the
benchmarks, ``cockpit demo`` and the tests import their models from here, so each
architecture is written once. It imports torch; the tracker (``cockpit``) never
imports it.

* :mod:`cockpit.zoo.models`: the digits MLP and CNN, the residual GroupNorm network,
  DeepOBS's 3c3d CNN and the character transformer.
* :mod:`cockpit.zoo.digits`: scikit-learn's digits as tensors, and mini-batches.
* :mod:`cockpit.zoo.text`: characters of the standard library's source, and windows.
* :mod:`cockpit.zoo.training`: the tracked training on the digits.
* :mod:`cockpit.zoo.demo`: what ``cockpit demo`` runs in its subprocess.
"""
