"""Edge <-> central wire protocol over ZeroMQ (CURVE): outbox, sender, hub receiver, keys.

Knows nothing of X-ray or radio: it moves generic messages (alerts, decisions, health) whose
bodies are dicts, plus evidence files, and downlink documents the other way.
"""
