"""The one exception type xfuse raises for bad input or an unusable setup.

Its message is a single line meant for a person: it names the file, line or
option at fault and what was expected. The command line prints it as
``xfuse: error: <message>`` and exits non-zero; library callers catch it.
"""


class XfuseError(Exception):
    """Bad input or environment, reported to the user in one line."""
