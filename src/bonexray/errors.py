"""The one base of every error a user can cause and fix.

A ConfigError means a setting, an input file or a pipeline artifact is wrong or missing; its
message names the file or the params.yaml key and the fix. Stage scripts and the CLI print
it and exit with status 2, without a traceback; anything else is a bug and keeps its
traceback. It is a ValueError, so callers that caught ValueError still do. A failure that is
not the user's to fix (a broken download, an export that disagrees with its model, a search
process that crashed) keeps its own type and exit status.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-fixable problem; the message names the file or key."""
