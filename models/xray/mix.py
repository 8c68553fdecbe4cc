"""The bag mix training draws from, in a module of its own so that the runtime-side tools that
measure the models on the same mix (models/xray/candidates.py) need no torch."""

import numpy as np

# Bag mix for training: a quarter clean (so the model learns ordinary contents), the rest spread
# over the classes, narcotics and weapons more often (the operating priorities and the targets;
# concealment bags carry a narcotics or currency payload half the time as well).
MIX = {None: 0.22, "narcotics": 0.34, "weapon": 0.28, "currency": 0.10, "concealment": 0.06}

# The verifier's own bag mix (models/xray/verifier_train.py). Its job is narcotics against what
# looks like them, and weapon bags show it few of those, while banknote stacks and compartments'
# contents are what the payload rule (detector.payload_keep) must not call narcotics: with MIX
# (28 % weapon, 10 % currency, 6 % concealment) the mask-trained verifier called currency in false
# bottoms narcotics so often that the calibration found no payload threshold right half the time
# (MODEL_CARD.md, "Verifier"). Hiding places stay the simulator's uniform choice.
VERIFIER_MIX = {None: 0.22, "narcotics": 0.34, "weapon": 0.12, "currency": 0.18, "concealment": 0.14}


def draw_kind(rng: np.random.Generator, mix: dict) -> str | None:
    """One bag's contraband class (None: clean) drawn from `mix`, whose shares sum to 1."""
    kinds = list(mix)
    return kinds[int(rng.choice(len(kinds), p=np.array(list(mix.values()))))]
