"""A worked example of your own tools and agents (offline, deterministic).

Run the server with it::

    RUNWIRE_AGENTS=examples.weather_agents:registry make run

then ask *ask weather: what's the weather in Paris?* (the builtin demo model delegates
to the ``weather`` sub-agent, which calls ``get_weather``). The tool needs the token scope
``weather:read``: ``runwire token --user alice --scope weather:read``.
"""

from __future__ import annotations

from dataclasses import replace

from runwire.agents.registry import AgentRegistry, AgentSpec, ToolSpec

# Demo data: a real tool would call a weather API here (with its own timeout).
CONDITIONS = {"paris": ("light rain", 12), "tokyo": ("clear", 18), "london": ("fog", 9),
              "new york": ("sunny", 15), "berlin": ("cloudy", 7)}


async def get_weather(city: str) -> dict[str, object]:
    """Current conditions for `city` (demo data)."""
    sky, celsius = CONDITIONS.get(city.strip().lower(), ("unknown", None))
    if celsius is None:
        raise ValueError(f"no weather data for {city!r}; try Paris, Tokyo, London")
    return {"city": city.strip().title(), "sky": sky, "celsius": celsius}


def registry(reg: AgentRegistry) -> None:
    """Called by runwire at start-up with its registry (``RUNWIRE_AGENTS``)."""
    reg.add_tool(ToolSpec(
        name="get_weather", function=get_weather,
        description="Current weather conditions for a city.",
        required_scopes=frozenset({"weather:read"}), timeout=5.0, rate_limit="30/minute"))
    reg.add_agent(AgentSpec(
        name="weather", description="knows the current weather in a city",
        instructions="Answer weather questions with the get_weather tool. Be brief.",
        tools=("get_weather",)))
    supervisor = reg.get_agent("supervisor")
    reg.add_agent(replace(supervisor, delegates=(*supervisor.delegates, "weather")),
                  replace=True)
