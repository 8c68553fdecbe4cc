"""Plumbing shared by every Zastava process, with no domain knowledge.

The design card has no folder for this; it exists so that the agent, central command and the
simulator can share config loading, logging and sd_notify without importing each other
(central must never import edge_agent, hw_sim must never import the agent).
"""
