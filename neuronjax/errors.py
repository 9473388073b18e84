"""Errors a user can cause. Each message names the file, the field or tensor, and what was expected."""


class NeuronJaxError(Exception):
    """Base of every error neuronjax raises on purpose."""


class ConfigError(NeuronJaxError, ValueError):
    """A configuration file or field is missing, unknown or out of range."""


class InputError(NeuronJaxError, ValueError):
    """An argument passed to the Python API (an array, a batch, an intervention) has the wrong
    shape, dtype or value."""


class DataError(NeuronJaxError, ValueError):
    """A data file (task rows, a dataset) cannot be read as what it should hold."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """A configuration file named by the user (run, task, sweep) does not exist."""


class CheckpointError(NeuronJaxError, ValueError):
    """A checkpoint is missing tensors, has mis-shaped ones, or cannot be read."""


class UnsupportedModelError(NeuronJaxError, ValueError):
    """The checkpoint's architecture, quantization or rope variant is not implemented."""


class SaveError(NeuronJaxError, OSError):
    """Writing a result or a checkpoint failed part-way (a full disk, say); the message says what
    was being written and what is left. `errno` is the underlying error's, when it had one."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_
