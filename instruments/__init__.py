"""One file per instrument: log records in, plotly figure out (``cockpit.instruments``).

Empty until the dashboard issue; it must never import torch.
"""
