"""Where per-sample gradients and curvature come from.

- ``backpack_engine``: BackPACK's backward hooks, with a module extension that reduces
  each layer's per-sample gradients to their sufficient statistics as soon as they
  exist; ``curvature``, ``ggn_gram``, ``hessian``: BackPACK's second-order extensions
  and Hessian-vector products of a replayed forward pass.
- ``module_func``: per-sample gradients of any leaf module's parameters from its own
  calls (torch.func, in the user's backward pass).
- ``func_engine``: the whole model replayed per sample with torch.func, for
  per-sample gradients and curvature where hooks cannot reach.
- ``choice``: which engine handles which parameter (``engine="auto"``).
"""
