"""TransPoint schedules, registered into the zoo's ``schedule`` registry.

This package is loaded through the ``zoo.plugins`` entry point, exactly as a third
party's schedules would be. See ``zoo.schedule`` for the contract.
"""

from schedules import basic, paper  # noqa: F401
