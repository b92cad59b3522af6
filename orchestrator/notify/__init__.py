"""Notifications: event names and fields (``events``), message templates (``templates``), delivery (``notifier``)."""
