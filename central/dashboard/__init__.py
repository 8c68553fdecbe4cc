"""The command dashboard (FastAPI + static pages), served by the central process."""
