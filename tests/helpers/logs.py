"""Recording what a logger says, for tests that check log messages."""
import logging


class MessageCapture(logging.Handler):
    """A handler that keeps every message (``getMessage()``) it sees in
    ``messages``, at every level."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
