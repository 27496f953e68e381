"""Transfer errors, kept apart so that code deciding on retries imports no HTTP library."""


class TransientError(Exception):
    """A failure worth retrying: dropped connections, timeouts, 5xx, 429."""


class RegistryHTTPError(Exception):
    """A refusal no retry changes (404, 401 after auth, 400...)."""
