"""The simulated SDR receivers: emitters, band synthesis, the rtl_tcp server, datasets and replay.

Imports nothing from edge_agent/; shares only the rtl_tcp protocol definitions in
drivers.rtltcp_protocol, as a real dongle and its client share only the wire.
"""
