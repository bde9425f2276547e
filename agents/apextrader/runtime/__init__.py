"""The agent runtime: settings, the `Agent` base and its context, health/metrics HTTP, JSON logs,
graceful stop. Every agent subclasses `Agent`; `apex agent ID` runs one with `run_agent`."""

from apextrader.runtime.agent import Agent, Handler
from apextrader.runtime.context import AgentContext
from apextrader.runtime.runner import AgentRunner, run_agent
from apextrader.runtime.settings import AgentSettings

__all__ = ["Agent", "AgentContext", "AgentRunner", "AgentSettings", "Handler", "run_agent"]
