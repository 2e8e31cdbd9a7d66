"""The zoo's own plugins: optional fast backends discovered through ``zoo.plugins`` entry points.

Each subpackage registers its backends on import and never fails to import when its
optional dependency (Triton, CUDA, mamba-ssm) is missing: ``is_available()`` says why.
"""
