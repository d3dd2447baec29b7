"""Agent runtime: supervisor, sub-agents, tools, tool dispatcher and model providers.

Never imports the gateway, the REST API or the web page: a run emits events to an
:class:`~runwire.agents.scope.EventSink` and never sees a socket.
"""
