"""The core's backends. Importing this package registers them (no entry point needed)."""

from zoo.backends import attention, conv, converter, norm, ssm  # noqa: F401
