"""Exceptions that the command line turns into a one-line message and exit code 2.

Library messages name Python parameters, never command-line flags. Where a message
advises what to pass, it ends with one of the advice phrases below; the command line
words each in its own flags (:func:`filterscope.cli._common.cli_message`).
"""

#: Advice after "already exists" for an output that ``overwrite=False`` protects.
OVERWRITE_ADVICE = "pass overwrite=True to replace it"
#: Advice for a run folder that holds a run already.
RESUME_ADVICE = "pass resume=True to go on with it, or another out_dir"
#: Advice for a model file that names code (an object path) instead of a registered name.
TRUST_CODE_ADVICE = "if you trust that code, load the file with trust_code=True"


class FilterscopeError(Exception):
    """Base class for errors caused by what the user asked for (bad file, bad option).

    The message is a single line meant for the user; the CLI prints it as
    ``filterscope: error: <message>`` and exits with status 2.
    """


class InputError(FilterscopeError, ValueError):
    """An input file or argument that cannot be used (missing, corrupt, wrong shape...)."""


class CheckpointError(FilterscopeError, ValueError):
    """A checkpoint that cannot be loaded safely or does not match any known architecture."""


class UnknownModelError(InputError):
    """A model name that is neither registered, nor a file, nor an importable object path."""


class ModelImportError(InputError):
    """An object path ``package.module:attribute`` that does not give a denoiser."""


class ChannelError(InputError):
    """A model asked to denoise images with a channel count it does not take."""


class UnsupportedLayerError(FilterscopeError, ValueError):
    """A layer that :func:`filterscope.make_bias_free` cannot turn into a bias-free one."""


class FilterscopeWarning(UserWarning):
    """Something done to the user's data that they should know about (an image converted
    from CMYK or a palette, for instance); the CLI prints it as one line
    ``filterscope: warning: <message>``."""
