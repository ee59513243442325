"""replydesk: answer customers from every platform in one terminal console."""

__version__ = "0.1.0"
