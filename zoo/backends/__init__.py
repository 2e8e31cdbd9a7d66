"""The core's backends. Importing this package registers them (no entry point needed)."""

from zoo.backends import attention, conv, converter, ssm  # noqa: F401
