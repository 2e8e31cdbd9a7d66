"""mamba-ssm plugin: ``ssm: mamba_ssm`` over mamba-ssm's ``mamba_chunk_scan_combined``.

Importing registers the backend whether or not mamba-ssm is installed, and never runs
``mamba_ssm/__init__`` (which needs CUDA extensions); see :mod:`.loader`.
"""

from zoo_plugins.mamba_ssm.backend import MambaSSM

__all__ = ["MambaSSM"]
