"""The hardware simulator: an X-ray scanner (images + serial control link) and rtl_tcp SDR
receivers, driven by scenario files. A separate device: imports nothing from edge_agent; it
shares only protocol definitions that live in drivers/.
"""
