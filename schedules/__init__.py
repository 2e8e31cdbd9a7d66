"""TransPoint schedules, registered into the zoo's ``schedule`` registry.

This package is part of the core: ``zoo.plugins.load_core`` imports it with the core's
backends, mixers and presets, so every preset builds with plugin autoload off. It imports
only ``zoo.registry`` and ``zoo.schedule`` (the infrastructure floor). See ``zoo.schedule``
for the contract.
"""

from schedules import basic, paper  # noqa: F401
