"""Our X-ray detector: network, training and export (torch; never imported by the runtime)."""
