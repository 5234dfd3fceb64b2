"""The one error type of chaoslab: a message that says what is wrong and what would be right."""

from chaoslib.exceptions import ActivityFailed


class ChaoslabError(ActivityFailed):
    """A user-facing failure. Chaos Toolkit records it as a failed activity;
    the chaoslab command prints it as one line and exits with status 2."""
