"""The one exception type for problems a user can fix (bad config, bad paths, bad data).

``fer_jax.main`` prints its message on a single line and exits with status 2 instead of
showing a traceback, so the message must say what is wrong and what to do about it.
"""


class UserError(Exception):
    """A problem in the user's input, reported as one actionable line."""
