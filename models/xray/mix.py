"""The bag mix training draws from, in a module of its own so that the runtime-side tools that
measure the models on the same mix (models/xray/candidates.py) need no torch."""

# Bag mix for training: a quarter clean (so the model learns ordinary contents), the rest spread
# over the classes, narcotics and weapons more often (the operating priorities and the targets;
# concealment bags carry a narcotics or currency payload half the time as well).
MIX = {None: 0.22, "narcotics": 0.34, "weapon": 0.28, "currency": 0.10, "concealment": 0.06}
