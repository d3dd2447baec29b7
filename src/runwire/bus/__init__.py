"""Event bus: delivers serialised frames to every connection of a user, on any node.

Backends implement :class:`runwire.bus.base.Bus`; the in-memory one is the default.
Never imports the gateway, the REST API or the web page.
"""
