"""The Dash app and the ``cockpit`` command line (installed as ``cockpit.app``).

Empty until the dashboard issue; it must never import torch.
"""
