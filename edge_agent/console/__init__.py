"""The officer console (FastAPI + static pages), served inside the agent process."""
