"""Where per-sample information comes from.

``backpack_engine``: BackPACK's backward hooks, with a module extension that reduces
each layer's per-sample gradients to their sufficient statistics as soon as they exist.
"""
