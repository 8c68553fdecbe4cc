"""Device drivers: each turns one kind of hardware into frames or IQ blocks.

Open any device by URL with `open_frame_source`, `open_iq_source` or `open_control_link`
(drivers.registry). Drivers know nothing of detectors or of the agent.
"""
